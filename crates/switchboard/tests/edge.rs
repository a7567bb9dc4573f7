//! The edge against hostile input, through the real binary: what an
//! attacker tried against earlier builds, and what a read of the code found.
//! Each test fails on a build without the defence it names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::api::{assert_nothing_left, sip_service, token};
use common::routes::{answered_call, open_route, settle, start, trunk, wait_log};
use common::uac::Uac;
use serde_json::json;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Every datagram `socket` receives within `quiet` of the last one.
fn drain(socket: &UdpSocket, quiet: Duration) -> Vec<String> {
    socket.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

/// An out-of-dialog request as a scanner or flooder sends it.
fn stray(method: &str, local: SocketAddr, target: SocketAddr, n: usize) -> String {
    format!(
        "{method} sip:+15550100@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-flood-{n};rport\r\n\
         From: <sip:flood@{local}>;tag=f{n}\r\nTo: <sip:+15550100@{target}>;tag=t{n}\r\n\
         Call-ID: flood-{n}@{local}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A caller that asks for a session interval of 2^64-1 seconds: the call
/// task used to panic adding it to the clock, so the caller's BYE got 481
/// and the call was never cleaned up.
#[test]
fn a_session_expires_of_2_to_the_64_is_survived_and_the_call_ends_cleanly() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(&sb, "");
    let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(
        &uac.pcmu_offer(),
        &[
            "Supported: timer".into(),
            "Session-Expires: 18446744073709551615".into(),
        ],
    );
    let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(ok.status(), 200, "{}", ok.text);
    uac.ack(seq, &ok);
    // The call's machine armed its session timer as it answered, before
    // the task could take the BYE.
    let bye = uac.in_dialog("BYE", "", "");
    let answer = uac.response_to(bye, "BYE", Duration::from_secs(5));
    let log = sb.log();
    assert_eq!(answer.status(), 200, "{}\n{log}", answer.text);
    assert!(!log.contains("panicked"), "{log}");
    assert_nothing_left(sb.api.unwrap(), || sb.log());
}

/// Forged out-of-dialog BYEs (and CANCELs, REGISTERs, unknown methods)
/// from one source, each with a fresh branch, used to hold a transaction
/// each for 32 s, fill the table and lock every caller out with 503; and
/// each 481 was sent again and again to a source nobody verified.
#[test]
fn a_flood_of_forged_requests_keeps_no_state_and_is_not_amplified() {
    let sb = start(&[("SWITCHBOARD_SIP__MAX_TRANSACTIONS", "200")]);
    open_route(&sb, "");
    let target = sb.udp.unwrap();
    // From its own address: the source guard bans it, and the real
    // caller below comes from 127.0.0.1.
    let flooder = UdpSocket::bind("127.0.0.3:0").unwrap();
    let local = flooder.local_addr().unwrap();
    let mut sent_bytes = 0usize;
    let methods = ["BYE", "CANCEL", "REGISTER", "FLOOD"];
    for n in 0..1200 {
        let text = stray(methods[n % methods.len()], local, target, n);
        sent_bytes += text.len();
        flooder.send_to(text.as_bytes(), target).unwrap();
        if n % 100 == 99 {
            // Loopback drops what outruns the receive buffer.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let answers = drain(&flooder, Duration::from_secs(3));
    let received_bytes: usize = answers.iter().map(String::len).sum();
    assert!(!answers.is_empty());
    assert!(
        answers.len() <= 1200,
        "{} answers to 1200 requests",
        answers.len()
    );
    assert!(
        received_bytes <= 3 * sent_bytes,
        "{received_bytes} bytes back for {sent_bytes} sent"
    );
    assert!(
        answers.iter().all(|a| !a.starts_with("SIP/2.0 503")),
        "the table filled up"
    );
    // Nothing comes back later: no retransmission to the source.
    let later = drain(&flooder, Duration::from_secs(2));
    assert!(later.is_empty(), "{} retransmissions", later.len());
    // Past its burst the flooder was limited, then banned.
    let metrics = common::api::metrics_blocking(sb.api.unwrap());
    assert!(
        metrics.contains("switchboard_sip_bans_active 1"),
        "{metrics}"
    );
    println!(
        "flood: {sent_bytes} bytes in, {received_bytes} bytes out ({} answers to 1200 requests)",
        answers.len()
    );
    // A real call still gets through.
    let mut uac = Uac::new(target, "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let mut ringing = uac.recv(Duration::from_secs(5)).expect("an answer");
    if ringing.status() == 100 {
        ringing = uac.recv(Duration::from_secs(5)).expect("ringing");
    }
    assert_eq!(ringing.status(), 180, "{}", ringing.text);
    uac.cancel(seq);
    let (_, last) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &last);
    assert_nothing_left(sb.api.unwrap(), || sb.log());
}

/// The Call-ID and tags of a call are in its participant's attributes, so
/// anyone in the room can forge in-dialog requests. Only the dialog's peer
/// may end the call, send it DTMF or move its audio.
#[test]
fn only_the_dialogs_peer_can_end_or_change_a_call() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    open_route(&sb, "");
    let (mut uac, _) = answered_call(&sb);
    let forger = UdpSocket::bind("127.0.0.2:0").unwrap();
    let elsewhere = "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    for (method, content_type, body) in [
        ("BYE", "", ""),
        (
            "INFO",
            "application/dtmf-relay",
            "Signal=5\r\nDuration=160\r\n",
        ),
        ("INVITE", "application/sdp", elsewhere),
    ] {
        let text = uac.in_dialog_text(method, &[], content_type, body);
        forger.send_to(text.as_bytes(), sb.udp.unwrap()).unwrap();
        let answers = drain(&forger, Duration::from_millis(500));
        assert_eq!(answers.len(), 1, "{method}: {answers:?}");
        assert!(
            answers[0].starts_with("SIP/2.0 403"),
            "{method}: {}",
            answers[0]
        );
    }
    let log = wait_log(&sb, "not the dialog's peer refused", Duration::from_secs(2));
    assert!(!log.contains("DTMF from the caller"), "{log}");
    // The caller still has its call and ends it itself.
    let bye = uac.in_dialog("BYE", "", "");
    let answer = uac.response_to(bye, "BYE", Duration::from_secs(5));
    assert_eq!(answer.status(), 200, "{}", answer.text);
    assert_nothing_left(sb.api.unwrap(), || sb.log());
}

/// A forged INVITE to an open trunk rings; 180 used to be sent again every
/// second for the whole ringing timeout to whoever the INVITE named.
#[test]
fn a_ringing_call_repeats_180_with_backoff_not_every_second() {
    let sb = start(&[]);
    open_route(&sb, r#", "ringing_timeout": "10s""#);
    let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let started = Instant::now();
    let mut ringing = 0;
    while started.elapsed() < Duration::from_secs(8) {
        if let Some(msg) = uac.recv(Duration::from_millis(200)) {
            if msg.status() == 180 {
                ringing += 1;
            }
        }
    }
    // At 0, 1, 3 and 7 s; one a second would be 8 or 9.
    assert!((2..=4).contains(&ringing), "{ringing} 180s in 8 s");
    uac.cancel(seq);
    let (_, last) = uac.final_response(seq, Duration::from_secs(5));
    assert_eq!(last.status(), 487);
    uac.ack(seq, &last);
    assert_nothing_left(sb.api.unwrap(), || sb.log());
}

/// A refused INVITE used to explain itself against every trunk with the
/// caller's To user in each reason: with many trunks and a long To user,
/// one packet cost megabytes of work and a log line as large.
#[test]
fn a_refusal_costs_the_same_whatever_the_trunks_and_the_to_user() {
    let sb = start(&[]);
    for n in 0..24 {
        trunk(
            &sb,
            &format!(r#"{{"name": "t{n}", "numbers": ["+1555010{n:02}"]}}"#),
        );
    }
    settle(&sb);
    let huge = "9".repeat(28_000);
    let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", &huge);
    let seq = uac.invite(&uac.pcmu_offer(), &[]);
    let (_, last) = uac.final_response(seq, Duration::from_secs(5));
    uac.ack(seq, &last);
    assert_eq!(last.status(), 404);
    let log = wait_log(&sb, "inbound call refused", Duration::from_secs(2));
    let line = log
        .lines()
        .find(|l| l.contains("inbound call refused"))
        .unwrap();
    assert!(line.len() < 4096, "a log line of {} bytes", line.len());
    assert!(line.contains("more trunks not shown"), "{line}");
}

/// Every API field that reaches a SIP message is refused with
/// invalid_argument naming it when it holds CR, LF or another control
/// character; before, `sip_call_to: "1000\r\nX-Evil: injected"` put an
/// X-Evil header into the INVITE. Nothing reaches the trunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_fields_with_line_breaks_never_reach_a_sip_message() {
    let sb = start(&[]);
    let api = sb.api.unwrap();
    let admin = token(
        json!({"sip": {"admin": true, "call": true}, "video": {"roomAdmin": true, "room": "r"}}),
    );
    let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (status, created) = sip_service(
        api,
        "CreateSIPOutboundTrunk",
        &admin,
        json!({"trunk": {"name": "carrier", "address": carrier.local_addr().unwrap().to_string(), "numbers": ["+15550999"]}}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let trunk_id = created["sip_trunk_id"].clone();
    let base = json!({
        "sip_trunk_id": trunk_id,
        "sip_call_to": "1000",
        "room_name": "r",
        "participant_identity": "callee",
    });
    let injected = "1000\r\nX-Evil: injected";
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("sip_call_to", json!({"sip_call_to": injected})),
        ("sip_number", json!({"sip_number": injected})),
        (
            "display_name",
            json!({"display_name": "Eve\rX-Evil: injected"}),
        ),
        ("dtmf", json!({"dtmf": "12\r\n3"})),
        (
            "sip_to_header.display_name",
            json!({"sip_to_header": {"display_name": "Eve\nX-Evil: 1", "uri": {"raw": "sip:1000@example.com"}}}),
        ),
        (
            "sip_request_uri",
            json!({"sip_request_uri": {"raw": "sip:1000@example.com\r\nX-Evil: 1"}}),
        ),
        ("X-Custom", json!({"headers": {"X-Custom": injected}})),
    ];
    for (field, overrides) in cases {
        let mut body = base.clone();
        for (k, v) in overrides.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = sip_service(api, "CreateSIPParticipant", &admin, body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["code"], "invalid_argument", "{field}: {answer}");
        assert!(
            answer["msg"].as_str().unwrap_or_default().contains(field),
            "{field}: {answer}"
        );
    }
    // Trunk fields are checked when they are stored.
    let (status, answer) = sip_service(
        api,
        "CreateSIPOutboundTrunk",
        &admin,
        json!({"trunk": {"name": "bad", "address": "127.0.0.1", "numbers": ["+1555\r\nX-Evil: 1"]}}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_argument")),
        "{answer}"
    );
    let (status, answer) = sip_service(
        api,
        "TransferSIPParticipant",
        &admin,
        json!({"room_name": "r", "participant_identity": "p", "transfer_to": "sip:a@b\r\nX-Evil: 1"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("transfer_to"),
        "{answer}"
    );
    let reached = drain(&carrier, Duration::from_millis(500));
    assert!(reached.is_empty(), "the trunk got {reached:?}");
}

/// A token that may read trunks does not read the carrier's password,
/// unless the operator asks for LiveKit's behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_passwords_are_not_returned_unless_configured() {
    for (return_passwords, shown) in [("false", ""), ("true", "s3cret")] {
        let sb = start(&[("SWITCHBOARD_API__RETURN_PASSWORDS", return_passwords)]);
        let api = sb.api.unwrap();
        let admin = token(json!({"sip": {"admin": true}}));
        let (status, inbound) = sip_service(
            api,
            "CreateSIPInboundTrunk",
            &admin,
            json!({"trunk": {"name": "in", "numbers": ["+15550100"], "auth_username": "carrier", "auth_password": "s3cret"}}),
        )
        .await;
        assert_eq!(status, 200, "{inbound}");
        let (status, outbound) = sip_service(
            api,
            "CreateSIPOutboundTrunk",
            &admin,
            json!({"trunk": {"name": "out", "address": "192.0.2.1", "numbers": ["+15550999"], "auth_username": "me", "auth_password": "s3cret"}}),
        )
        .await;
        assert_eq!(status, 200, "{outbound}");
        let reads = [
            (
                "GetSIPInboundTrunk",
                json!({"sip_trunk_id": inbound["sip_trunk_id"]}),
                "/trunk",
            ),
            (
                "GetSIPOutboundTrunk",
                json!({"sip_trunk_id": outbound["sip_trunk_id"]}),
                "/trunk",
            ),
            ("ListSIPInboundTrunk", json!({}), "/items/0"),
            ("ListSIPOutboundTrunk", json!({}), "/items/0"),
        ];
        for (method, body, at) in reads {
            let (status, answer) = sip_service(api, method, &admin, body).await;
            assert_eq!(status, 200, "{method}: {answer}");
            let trunk = answer.pointer(at).unwrap();
            assert_eq!(
                trunk["auth_password"], shown,
                "{method} with return_passwords {return_passwords}"
            );
            assert_ne!(
                trunk["auth_username"], "",
                "{method}: the user name is shown"
            );
        }
        let (_, legacy) = sip_service(api, "ListSIPTrunk", &admin, json!({})).await;
        for item in legacy["items"].as_array().unwrap() {
            for field in ["inbound_password", "outbound_password"] {
                let value = item[field].as_str().unwrap_or_default();
                assert!(
                    value.is_empty() || value == shown,
                    "ListSIPTrunk {field}: {item}"
                );
            }
        }
    }
}

/// One source cannot hold more than `sip.max_connections_per_ip` TCP
/// connections; another source is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_holds_at_most_its_share_of_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sb = start(&[("SWITCHBOARD_SIP__MAX_CONNECTIONS_PER_IP", "3")]);
    let target = sb.tcp.unwrap();
    let connect_from = |ip: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(target).await.unwrap()
    };
    // Whether a connection answers an OPTIONS ping.
    async fn answers(stream: &mut tokio::net::TcpStream, n: usize) -> bool {
        let local = stream.local_addr().unwrap();
        let ping = common::options(
            "TCP",
            local,
            stream.peer_addr().unwrap(),
            &format!("cap-{n}"),
        );
        if stream.write_all(ping.as_bytes()).await.is_err() {
            return false;
        }
        let mut buf = vec![0u8; 4096];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await,
            Ok(Ok(read)) if read > 0 && buf.starts_with(b"SIP/2.0 200")
        )
    }
    let mut held = Vec::new();
    for n in 0..3 {
        let mut stream = connect_from("127.0.0.4").await;
        assert!(answers(&mut stream, n).await, "connection {n} of 3");
        held.push(stream);
    }
    let mut fourth = connect_from("127.0.0.4").await;
    assert!(
        !answers(&mut fourth, 3).await,
        "a fourth connection from one source"
    );
    let mut other = connect_from("127.0.0.1").await;
    assert!(answers(&mut other, 4).await, "another source");
    drop(held);
    // The server frees the slot when it sees the close: try until it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_from("127.0.0.4").await;
        if answers(&mut again, 5).await {
            break;
        }
        assert!(Instant::now() < deadline, "a slot is never free again");
    }
}

/// CRLF keep-alives get their pong but do not keep a connection open past
/// the idle timeout: only complete SIP messages do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_alone_do_not_hold_a_connection_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sb = start(&[("SWITCHBOARD_SIP__CONNECTION_IDLE_SECS", "2")]);
    let mut stream = tokio::net::TcpStream::connect(sb.tcp.unwrap())
        .await
        .unwrap();
    let started = Instant::now();
    let mut pongs = 0;
    let closed_after = loop {
        assert!(started.elapsed() < Duration::from_secs(8), "never closed");
        if stream.write_all(b"\r\n\r\n").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => pongs += 1,
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(pongs >= 2, "keep-alives are answered ({pongs})");
    assert!(
        closed_after >= Duration::from_secs(2) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
}

/// Clients that connect to the API and say nothing, or stop half-way
/// through a request, are disconnected after `api.idle_timeout_secs`; at
/// most `api.max_connections` are open at once, and a client past the cap
/// is served once a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_api_clients_are_disconnected_and_connections_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sb = start(&[
        ("SWITCHBOARD_API__IDLE_TIMEOUT_SECS", "2"),
        ("SWITCHBOARD_API__MAX_CONNECTIONS", "2"),
    ]);
    let api = sb.api.unwrap();
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(api).await.unwrap();
    let mut halfway = tokio::net::TcpStream::connect(api).await.unwrap();
    halfway
        .write_all(b"POST /twirp/livekit.SIP/ListSIPInboundTrunk HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A third client waits for a slot.
    let mut third = tokio::net::TcpStream::connect(api).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let served = tokio::time::timeout(Duration::from_secs(8), third.read_to_end(&mut answer)).await;
    let waited = started.elapsed();
    assert!(served.is_ok(), "the third client was never served");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        waited >= Duration::from_millis(1500),
        "served at once ({waited:?}) past the cap"
    );
    for (name, stream) in [("silent", &mut silent), ("half-way", &mut halfway)] {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(4), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the {name} client is still connected: {read:?}"
        );
    }
}

/// A TCP peer that sends requests but never reads the answers cannot hold
/// the connection's writer: once a write has waited `sip.write_timeout_secs`
/// the connection is shut. (The peer is trusted so that the flood of
/// requests it needs to fill the kernel's buffers is not banned first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_peer_that_stops_reading_is_cut_off_at_the_write_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sb = start(&[
        ("SWITCHBOARD_SIP__WRITE_TIMEOUT_SECS", "1"),
        ("SWITCHBOARD_SECURITY__TRUSTED", "[127.0.0.0/8]"),
    ]);
    let target = sb.tcp.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small receive window, so the answers back up sooner.
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(target).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0u32;
    // The log is read twice a second at most: it grows with every request.
    let mut next_look = Instant::now();
    let mut cut_off = || {
        if Instant::now() < next_look {
            return false;
        }
        next_look = Instant::now() + Duration::from_millis(500);
        sb.log().contains("write timed out; connection closed")
    };
    while !cut_off() {
        assert!(
            Instant::now() < deadline,
            "{sent} requests unread and the writer still waits:\n{}",
            sb.log()
        );
        for _ in 0..500 {
            let request = common::options("TCP", local, target, &format!("unread-{sent}"));
            match tokio::time::timeout(Duration::from_secs(1), writer.write_all(request.as_bytes()))
                .await
            {
                Ok(Ok(())) => sent += 1,
                // The server stopped reading too, or closed: enough sent.
                _ => break,
            }
        }
    }
    // What the server had sent before it gave up is still readable; then
    // its side is closed.
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server never closed its side");
    println!("cut off after {sent} unread requests");
}

/// One source holds at most `api.max_connections_per_ip` HTTP connections
/// (another source is not affected), and a client that trickles its
/// request head a byte at a time is cut off at `api.header_timeout_secs`
/// though it is never idle; a WebSocket participant, past its upgrade, is
/// not subject to the head deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_connections_per_source_are_capped_and_trickled_heads_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sb = start(&[
        ("SWITCHBOARD_API__MAX_CONNECTIONS_PER_IP", "2"),
        ("SWITCHBOARD_API__HEADER_TIMEOUT_SECS", "1"),
    ]);
    let api = sb.api.unwrap();
    let connect_from = |ip: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(api).await.unwrap()
    };
    // Whether a connection is answered 200 on /healthz.
    async fn healthy(stream: &mut tokio::net::TcpStream) -> bool {
        if stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 256];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
            Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200")
        )
    }
    let mut first = connect_from("127.0.0.7").await;
    let mut second = connect_from("127.0.0.7").await;
    assert!(healthy(&mut first).await && healthy(&mut second).await);
    let mut third = connect_from("127.0.0.7").await;
    assert!(
        !healthy(&mut third).await,
        "a third connection from one source"
    );
    let mut other = connect_from("127.0.0.8").await;
    assert!(healthy(&mut other).await, "another source");

    // A head trickled one byte every 200 ms: never idle, never complete.
    drop(first);
    let mut slow = loop {
        // The server frees the first slot when it sees the close.
        let mut candidate = connect_from("127.0.0.7").await;
        if healthy(&mut candidate).await {
            break candidate;
        }
    };
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut_off = None;
    for byte in head {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = Some(started.elapsed());
                break;
            }
            _ => {}
        }
    }
    let cut_off = cut_off.expect("a trickled head is never cut off");
    assert!(
        cut_off >= Duration::from_millis(900),
        "cut off before the header timeout: {cut_off:?}"
    );

    // A WebSocket participant lives past the head deadline.
    drop(second);
    drop(third);
    let mut participant = common::ws::Client::join(api, "r", "p", 8000).await;
    common::ws::play(
        &mut [(&mut participant, Some(440.0))],
        Duration::from_millis(2500),
    )
    .await;
    let frames = participant.frames;
    common::ws::play(
        &mut [(&mut participant, Some(440.0))],
        Duration::from_millis(500),
    )
    .await;
    assert!(
        participant.closed.is_none() && participant.frames > frames,
        "the participant was cut off: {:?}, {} then {} frames",
        participant.closed,
        frames,
        participant.frames
    );
}

/// Link-local (cloud metadata), multicast and unspecified addresses are
/// refused as destinations: an inline trunk, a transfer target, a peer's
/// SDP address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_destinations_get_neither_signalling_nor_media() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    let api = sb.api.unwrap();
    let admin = token(
        json!({"sip": {"admin": true, "call": true}, "video": {"roomAdmin": true, "room": "r"}}),
    );
    let (status, answer) = sip_service(
        api,
        "CreateSIPParticipant",
        &admin,
        json!({
            "trunk": {"hostname": "169.254.169.254", "transport": "SIP_TRANSPORT_UDP"},
            "sip_number": "+15550999",
            "sip_call_to": "1000",
            "room_name": "metadata",
            "wait_until_answered": true,
        }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("refused destination"),
        "{answer}"
    );
    let sb_for_calls = sb;
    let sb = tokio::task::spawn_blocking(move || {
        let sb = sb_for_calls;
        open_route(&sb, "");
        for c in ["169.254.169.254", "224.0.0.251"] {
            let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
            let offer = common::uac::sdp_offer(uac.rtp_port(), "0", &["0 PCMU/8000"])
                .replace("IN IP4 127.0.0.1", &format!("IN IP4 {c}"));
            let seq = uac.invite(&offer, &[]);
            let (_, last) = uac.final_response(seq, Duration::from_secs(5));
            uac.ack(seq, &last);
            assert_eq!(last.status(), 488, "c={c}: {}", last.text);
        }
        sb
    })
    .await
    .unwrap();
    // A call in progress cannot be transferred to the metadata service.
    let sb = tokio::task::spawn_blocking(move || {
        let (uac, _) = answered_call(&sb);
        (sb, uac)
    })
    .await
    .unwrap();
    let (sb, mut uac) = sb;
    let (status, answer) = sip_service(
        api,
        "TransferSIPParticipant",
        &admin,
        json!({"room_name": "r", "participant_identity": "sip_+15550199", "transfer_to": "sip:agent@169.254.169.254"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}\n{}", sb.log());
    assert!(
        answer["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("refused address"),
        "{answer}"
    );
    tokio::task::spawn_blocking(move || {
        let bye = uac.in_dialog("BYE", "", "");
        assert_eq!(
            uac.response_to(bye, "BYE", Duration::from_secs(5)).status(),
            200
        );
        assert_nothing_left(sb.api.unwrap(), || sb.log());
    })
    .await
    .unwrap();
}

/// PIN guesses count as failed authentications, whether made one after
/// another or in parallel calls: past the threshold the source is banned
/// and its next call gets silence.
#[test]
fn pin_guessing_in_parallel_calls_ends_in_a_ban() {
    let sb = start(&[("SWITCHBOARD_SECURITY__AUTH_FAILURES_TO_BAN", "2")]);
    let id = trunk(&sb, r#"{"name": "t", "numbers": ["+15550100"]}"#);
    common::routes::rule(
        &sb,
        &format!(
            r#"{{"name": "pin", "trunk_ids": ["{id}"], "rule": {{"dispatch_rule_direct": {{"room_name": "secret", "pin": "1234"}}}}}}"#
        ),
    );
    settle(&sb);
    // Two calls at once, each guessing.
    let mut guessers: Vec<Uac> = (0..2).map(|_| answered_call(&sb).0).collect();
    for (uac, guess) in guessers.iter_mut().zip(["1111#", "2222#"]) {
        for c in guess.chars() {
            let seq = uac.in_dialog(
                "INFO",
                "application/dtmf-relay",
                &format!("Signal={c}\r\nDuration=160\r\n"),
            );
            if c != '#' {
                // After '#', the source may be banned: no answer then.
                let answer = uac.response_to(seq, "INFO", Duration::from_secs(3));
                assert_eq!(answer.status(), 200, "{}", answer.text);
            }
        }
    }
    // Both calls end on their wrong PIN; the second failure bans the
    // source, and from then on nothing is sent to it, BYEs included.
    let log = wait_log(&sb, "source banned", Duration::from_secs(10));
    assert!(log.contains("reason=\"failed authentications\""), "{log}");
    assert_eq!(log.matches("PIN refused").count(), 2, "{log}");
    assert_nothing_left(sb.api.unwrap(), || sb.log());
    let mut third = Uac::new(sb.udp.unwrap(), "+15550199", "+15550100");
    third.invite(&third.pcmu_offer(), &[]);
    assert!(
        third.recv(Duration::from_secs(2)).is_none(),
        "a banned source was answered"
    );
}

/// An INVITE refused at once (no trunk, or a digest challenge) is answered
/// once per INVITE received: no 100 Trying before it and no Timer G
/// retransmissions after it, so a forged source gets one answer.
#[test]
fn an_immediate_refusal_is_sent_once() {
    let sb = start(&[]);
    trunk(
        &sb,
        r#"{"name": "auth", "numbers": ["+15550100"], "auth_username": "u", "auth_password": "p"}"#,
    );
    settle(&sb);
    for number in ["+15559999", "+15550100"] {
        let mut uac = Uac::new(sb.udp.unwrap(), "+15550199", number);
        let invite = uac.pcmu_offer();
        uac.invite(&invite, &[]);
        let mut answers = Vec::new();
        while let Some(msg) = uac.recv(Duration::from_millis(3500)) {
            answers.push(msg.status());
        }
        let want = if number == "+15559999" { 404 } else { 407 };
        assert_eq!(answers, vec![want], "{number}");
    }
}

/// An `allowed_addresses` host name would be compared with the From host,
/// which any caller writes: it is refused when the trunk is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_is_no_source_check_and_is_refused() {
    let sb = start(&[]);
    let admin = token(json!({"sip": {"admin": true}}));
    let (status, answer) = sip_service(
        sb.api.unwrap(),
        "CreateSIPInboundTrunk",
        &admin,
        json!({"trunk": {"name": "by name", "numbers": ["+15550100"], "allowed_addresses": ["sip.carrier.example"]}}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_argument")),
        "{answer}"
    );
    assert!(
        answer["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("host names are not accepted"),
        "{answer}"
    );
}

//! The sans-IO SIP core (`switchboard_sip::Endpoint`) fed what a peer sends.
//!
//! The input is split at the first line `%%` into up to four datagrams; each
//! is handled as arriving over UDP from one address (even the 1st, 3rd, ...)
//! or TCP (framed with `StreamDecoder`, as the transport driver does). The
//! harness plays a transaction user that answers every request it is handed
//! with a status taken from the input, and advances virtual time so that the
//! transaction timers fire. Nothing may panic, and every transmit must have CR/LF
//! only as line ends in its header section (or be a keep-alive).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchboard_sip::framing::{Frame, StreamDecoder};
use switchboard_sip::message::{HeaderName, ResponseSpec};
use switchboard_sip::{ConnectionId, Endpoint, EndpointConfig, Event, Flow, Transport};

const STATUSES: [u16; 8] = [100, 180, 183, 200, 401, 486, 488, 603];

fn drain(endpoint: &mut Endpoint, now: Instant, status_seed: u8) {
    let mut rounds = 0;
    while let Some(event) = endpoint.poll_event() {
        rounds += 1;
        if rounds > 64 {
            break;
        }
        if let Event::Request(incoming) = event {
            let status = STATUSES[usize::from(status_seed) % STATUSES.len()];
            let spec = ResponseSpec::new(status).header(HeaderName::Contact, "<sip:fuzz@127.0.0.1>");
            let _ = endpoint.respond(now, incoming.txn, spec);
        }
    }
    while let Some(transmit) = endpoint.poll_transmit() {
        check_line_safe(&transmit.payload);
    }
}

/// What the core sends has CR and LF only as CRLF line ends in its header
/// section: a CR or LF copied from a peer's value would inject headers.
fn check_line_safe(payload: &[u8]) {
    if payload == b"\r\n" {
        return;
    }
    let head_end = find(payload, b"\r\n\r\n").unwrap_or_else(|| {
        panic!("sent message has no blank line: {:?}", String::from_utf8_lossy(payload))
    });
    let head = &payload[..head_end + 2];
    for (i, &b) in head.iter().enumerate() {
        let ok = match b {
            b'\r' => head.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && head[i - 1] == b'\r',
            _ => true,
        };
        assert!(
            ok,
            "bare CR or LF at byte {i} of a sent header section:\n{}",
            String::from_utf8_lossy(payload)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&status_seed, data)) = data.split_first() else {
        return;
    };
    let mut endpoint = Endpoint::new(EndpointConfig::default());
    let start = Instant::now();
    let local: SocketAddr = "127.0.0.1:5060".parse().expect("literal");
    let remote: SocketAddr = "198.51.100.20:5062".parse().expect("literal");
    let udp = Flow {
        transport: Transport::Udp,
        local,
        remote,
        connection: None,
    };
    let tcp = Flow {
        transport: Transport::Tcp,
        local,
        remote,
        connection: Some(ConnectionId(1)),
    };
    let mut decoder = StreamDecoder::new(endpoint.config().limits.clone());
    let mut now = start;
    for (i, part) in split(data).into_iter().take(4).enumerate() {
        now += Duration::from_millis(10);
        if i % 2 == 0 {
            endpoint.handle_message(now, udp, part);
        } else {
            decoder.push(part);
            while let Some(frame) = decoder.next_frame() {
                match frame {
                    Frame::Message(bytes) => {
                        endpoint.handle_message(now, tcp, &bytes);
                    }
                    Frame::KeepAlive => endpoint.handle_keepalive(tcp),
                    Frame::Error(error, head) => endpoint.handle_frame_error(tcp, &error, &head),
                }
            }
        }
        drain(&mut endpoint, now, status_seed);
    }
    // Let retransmission and transaction timers run out (64*T1 and more).
    for _ in 0..8 {
        let Some(deadline) = endpoint.poll_timeout() else {
            break;
        };
        now = now.max(deadline);
        endpoint.handle_timeout(now);
        drain(&mut endpoint, now, status_seed.wrapping_add(1));
    }
    let _ = endpoint.stats();
    let _ = endpoint.transaction_count();
});

/// Splits at lines that are exactly `%%`.
fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = find(rest, b"\n%%\n") {
        parts.push(&rest[..at + 1]);
        rest = &rest[at + 4..];
    }
    parts.push(rest);
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

//! A measurement, not a check: the delay switchboard adds between one
//! caller's mouth and the other's ear in a two-party room (bench/calls.md
//! §4). Ignored in the suite; run it with
//!
//!     cargo test --release -p switchboard --test latency -- --ignored --nocapture
//!
//! Two callers (PCMU) share a room. Both send 20 ms packets on a fixed
//! schedule; every half second caller A sends one loud frame instead of
//! silence, and caller B timestamps the first loud packet it gets back. The
//! difference is the added delay: jitter buffer, room rings, the media
//! workers' and the room's 20 ms clocks, and the sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::routes::{rule, settle, start, trunk};
use common::uac::{sdp_rtp_addr, Uac};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Loud frames sent by A.
const IMPULSES: usize = 40;
/// Frames between two loud ones (half a second).
const SPACING: usize = 25;
/// µ-law bytes of a full-scale 4 kHz square wave.
const LOUD: [u8; 2] = [0x80, 0x00];

fn rtp(seq: u16, timestamp: u32, ssrc: u32, loud: bool) -> Vec<u8> {
    let mut packet = vec![0x80, 0, (seq >> 8) as u8, seq as u8];
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend((0..160).map(|i| if loud { LOUD[i % 2] } else { 0xff }));
    packet
}

/// A loud µ-law payload: most bytes far from the two codes of silence.
fn is_loud(payload: &[u8]) -> bool {
    let high = payload.iter().filter(|b| (**b & 0x7f) < 0x30).count();
    high > payload.len() / 2
}

/// Sends a 20 ms stream from `socket` to `to` until `stop`, a loud frame
/// every [`SPACING`] frames when `sent` is given (its send times go there).
fn stream(
    socket: UdpSocket,
    to: SocketAddr,
    ssrc: u32,
    sent: Option<Arc<Mutex<Vec<Instant>>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        for frame in 0u32.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let due = start + Duration::from_millis(20 * u64::from(frame));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // Loud frames start after 2 s, once both calls are in the room.
            let loud = sent.is_some() && frame >= 100 && frame % SPACING as u32 == 0;
            let packet = rtp(frame as u16, frame.wrapping_mul(160), ssrc, loud);
            socket.send_to(&packet, to).unwrap();
            if loud {
                if let Some(sent) = &sent {
                    sent.lock().unwrap().push(Instant::now());
                }
            }
        }
    })
}

#[test]
#[ignore = "a measurement for bench/calls.md, not a check; see the file's header"]
fn mouth_to_ear_latency_through_a_two_party_room() {
    let sb = start(&[("SWITCHBOARD_CALLS__ANSWER", "immediate")]);
    let t = trunk(&sb, r#"{"name": "t", "numbers": ["+15550100"]}"#);
    rule(
        &sb,
        &format!(
            r#"{{"name": "r", "trunk_ids": ["{t}"], "rule": {{"dispatch_rule_direct": {{"room_name": "latency"}}}}}}"#
        ),
    );
    settle(&sb);
    let target = sb.udp.unwrap();
    let mut callers = Vec::new();
    for from in ["+15550001", "+15550002"] {
        let mut uac = Uac::new(target, from, "+15550100");
        let seq = uac.invite(&uac.pcmu_offer(), &[]);
        let (_, ok) = uac.final_response(seq, Duration::from_secs(5));
        assert_eq!(ok.status(), 200, "{}", ok.text);
        uac.ack(seq, &ok);
        let media = sdp_rtp_addr(ok.body()).unwrap();
        callers.push((uac, media));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let (a, a_media) = &callers[0];
    let (b, b_media) = &callers[1];
    let a_stream = stream(
        a.rtp.try_clone().unwrap(),
        *a_media,
        0xa,
        Some(sent.clone()),
        stop.clone(),
    );
    let b_stream = stream(
        b.rtp.try_clone().unwrap(),
        *b_media,
        0xb,
        None,
        stop.clone(),
    );

    // B's ear: the arrival time of each loud packet that follows silence.
    let mut heard = Vec::new();
    let mut buf = [0u8; 1500];
    let mut was_loud = false;
    b.rtp
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline =
        Instant::now() + Duration::from_millis(20 * (100 + SPACING * IMPULSES) as u64 + 2000);
    while Instant::now() < deadline && heard.len() < IMPULSES {
        let Ok(n) = b.rtp.recv(&mut buf) else {
            continue;
        };
        let at = Instant::now();
        let loud = n > 12 && is_loud(&buf[12..n]);
        if loud && !was_loud {
            heard.push(at);
        }
        was_loud = loud;
    }
    stop.store(true, Ordering::Relaxed);
    a_stream.join().unwrap();
    b_stream.join().unwrap();

    let sent = sent.lock().unwrap().clone();
    let mut delays: Vec<f64> = heard
        .iter()
        .filter_map(|h| {
            // The latest loud frame sent before it was heard.
            sent.iter()
                .rfind(|s| *s <= h)
                .map(|s| h.duration_since(*s).as_secs_f64() * 1000.0)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    assert!(
        !delays.is_empty(),
        "B heard none of A's loud frames\n{}",
        sb.log()
    );
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    println!(
        "mouth-to-ear added by switchboard over {} loud frames (sent {}): min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        delays.len(),
        sent.len(),
        delays[0],
        at(0.5),
        at(0.9),
        delays[delays.len() - 1]
    );
    for (mut uac, _) in callers {
        let bye = uac.in_dialog("BYE", "", "");
        uac.response_to(bye, "BYE", Duration::from_secs(3));
    }
}

//! RFC 4733 telephone-events (switchboard_media::dtmf).
//!
//! The input is a stream of 8-byte records `[timestamp u32 BE][payload 4]`
//! fed to a `DtmfReceiver` as the telephone-event packets of one call.
//! Checked: `TelephoneEvent` parses any 4 bytes and writes them back
//! unchanged (but the reserved bit, which it drops); a digit is reported
//! only for event codes 0..=15; a timestamp that yielded a digit yields no
//! other while it is still among the receiver's 8 remembered events (fewer
//! than 8 other timestamps arrived since). After that the receiver cannot
//! tell it from a new event (timestamps can wrap forward past it), which is
//! by design: a peer that wants another digit can simply send one.
//!
//! The input, read as text, is also queued on a `DtmfSender` (digits and
//! `w` pauses), which must then produce well-formed event packets that a
//! receiver decodes back to exactly the digits queued, in order.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use switchboard_media::dtmf::{
    DtmfDigit, DtmfFrame, DtmfReceiver, DtmfSendConfig, DtmfSender, TelephoneEvent,
};

fuzz_target!(|data: &[u8]| {
    let mut receiver = DtmfReceiver::new();
    let mut last_digit_ts: Option<u32> = None;
    let mut seen_since: HashSet<u32> = HashSet::new();
    for record in data.chunks(8) {
        let (ts_bytes, payload) = record.split_at(record.len().min(4));
        let timestamp = match <[u8; 4]>::try_from(ts_bytes) {
            Ok(b) => u32::from_be_bytes(b),
            Err(_) => continue,
        };
        if let Some(event) = TelephoneEvent::parse(payload) {
            let bytes = event.to_bytes();
            assert_eq!(bytes[0], payload[0]);
            assert_eq!(bytes[1], payload[1] & 0xbf, "E and volume bits");
            assert_eq!(bytes[2..4], payload[2..4]);
            assert_eq!(TelephoneEvent::parse(&bytes), Some(event));
        }
        if let Some(digit) = receiver.on_packet(timestamp, payload) {
            assert!(digit.code <= 15);
            assert_eq!(Some(digit), DtmfDigit::from_code(payload[0]));
            assert_eq!(DtmfDigit::from_char(digit.as_char()), Some(digit));
            if last_digit_ts == Some(timestamp) {
                assert!(
                    seen_since.len() >= 8,
                    "one event reported twice with only {} other timestamps between",
                    seen_since.len()
                );
            }
            last_digit_ts = Some(timestamp);
            seen_since.clear();
        } else if payload.len() >= 4 && last_digit_ts != Some(timestamp) {
            seen_since.insert(timestamp);
        }
    }

    // Sending: whatever is queued comes out as the receiver reads it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > 64 {
        return;
    }
    let mut sender = DtmfSender::new(DtmfSendConfig::default());
    if sender.queue(text).is_err() {
        return;
    }
    let expected: Vec<DtmfDigit> = text.chars().filter_map(DtmfDigit::from_char).collect();
    let mut receiver = DtmfReceiver::new();
    let mut got = Vec::new();
    let mut timestamp = 0x1234u32;
    let mut frames = 0u32;
    while sender.is_busy() {
        frames += 1;
        assert!(frames < 100_000, "sender never finishes");
        match sender.next_frame(timestamp, 160, 8000) {
            DtmfFrame::Audio => {}
            DtmfFrame::Event {
                payload,
                timestamp: event_ts,
                ..
            } => {
                if let Some(d) = receiver.on_packet(event_ts, &payload) {
                    got.push(d);
                }
            }
        }
        timestamp = timestamp.wrapping_add(160);
    }
    assert_eq!(got, expected, "digits sent and received differ for {text:?}");
});

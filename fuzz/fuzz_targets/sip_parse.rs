//! SIP message parsing (switchboard_sip::message) and stream framing
//! (switchboard_sip::framing::StreamDecoder).
//!
//! 1. `parse_message` on the whole input. On success every accessor that
//!    interprets a header runs (Request-URI, CSeq, From, To, Via, ...), the
//!    message is serialised with `to_bytes()` and parsed again: that second
//!    parse must succeed, and from the second serialisation on the bytes
//!    must not change (see `check_round_trip`).
//!    A rejection's envelope is turned into a 400 with `ResponseBuilder`, as
//!    the core answers a malformed request; if that 400 parses, it must parse
//!    as a response.
//! 2. The same input pushed through a `StreamDecoder` in chunks whose sizes
//!    come from the input, every frame parsed; `finish()` at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::framing::{Frame, StreamDecoder};
use switchboard_sip::message::{
    parse_message, HeaderName, Headers, Message, NameAddr, ResponseBuilder, ResponseSpec, Uri, Via,
};
use switchboard_sip::Limits;

fn exercise_headers(headers: &Headers) {
    for field in headers.iter() {
        let value = field.value.as_str();
        let _ = HeaderName::parse(field.name.as_str());
        match field.name {
            HeaderName::Via => {
                for element in headers.list(&HeaderName::Via) {
                    if let Ok(via) = Via::parse(element) {
                        let _ = via.branch();
                        let _ = via.rfc3261_branch();
                        let _ = via.sent_by();
                    }
                }
            }
            HeaderName::From
            | HeaderName::To
            | HeaderName::Contact
            | HeaderName::ReferTo
            | HeaderName::ReferredBy
            | HeaderName::RecordRoute => {
                if let Ok(na) = NameAddr::parse(value) {
                    let _ = na.tag();
                    let _ = na.uri.user();
                    if let Some(sip) = na.uri.as_sip() {
                        let _ = sip.user_decoded();
                        let _ = sip.param("transport");
                    }
                }
            }
            _ => {}
        }
    }
    let _ = headers.top_via();
}

fn serialise(message: &Message) -> Vec<u8> {
    match message {
        Message::Request(r) => r.to_bytes().to_vec(),
        Message::Response(r) => r.to_bytes().to_vec(),
    }
}

fn reparse(bytes: &[u8], limits: &Limits, what: &str) -> Message {
    match parse_message(bytes, limits) {
        Ok(m) => m,
        Err(rejection) => panic!(
            "{what} message does not parse again: {:?}\n--- serialised ---\n{}",
            rejection.error,
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// A parsed message serialises to a message that parses. The first
/// serialisation may differ from the input (control characters in values
/// become spaces, a deliberate last line of defence in `extend_line_safe`,
/// and the parser then trims the space at a value's start), so stability
/// is checked from the second serialisation on.
fn check_round_trip(message: &Message, limits: &Limits) {
    let first = serialise(message);
    let second = serialise(&reparse(&first, limits, "serialised"));
    let third = serialise(&reparse(&second, limits, "twice serialised"));
    assert_eq!(
        String::from_utf8_lossy(&second),
        String::from_utf8_lossy(&third),
        "serialisation is not stable across a parse"
    );
}

fn answer(headers: &Headers, limits: &Limits) {
    let builder = ResponseBuilder {
        request_headers: headers,
        source: Some("192.0.2.7:5060".parse().expect("literal address")),
        local_tag: Some("fuzz-tag"),
        server: Some("switchboard-fuzz"),
    };
    let response = builder.build(&ResponseSpec::new(400).header(HeaderName::Warning, "399 fuzz"));
    let bytes = response.to_bytes();
    // A response built from any envelope must still be a message we parse
    // as a response (status line intact); the headers may be rejected.
    if let Ok(message) = parse_message(&bytes, limits) {
        assert!(matches!(message, Message::Response(_)), "400 parsed as a request");
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match parse_message(data, &limits) {
        Ok(message) => {
            match &message {
                Message::Request(r) => {
                    let _ = r.parsed_uri();
                    let _ = Uri::parse(&r.uri).map(|u| u.user());
                    let _ = r.cseq();
                    let _ = r.call_id();
                    let _ = r.from();
                    let _ = r.to();
                    let _ = r.top_via();
                    exercise_headers(&r.headers);
                    answer(&r.headers, &limits);
                }
                Message::Response(r) => {
                    let _ = r.cseq();
                    let _ = r.call_id();
                    let _ = r.from();
                    let _ = r.to();
                    let _ = r.top_via();
                    exercise_headers(&r.headers);
                }
            }
            check_round_trip(&message, &limits);
        }
        Err(rejection) => {
            let _ = rejection.error.to_string();
            let _ = rejection.error.status();
            if rejection.is_answerable() {
                answer(&rejection.envelope, &limits);
            }
        }
    }

    // Stream framing: chunk sizes from the first byte.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let small = Limits {
        max_message_bytes: 4096,
        max_headers: 64,
    };
    let mut decoder = StreamDecoder::new(small.clone());
    let mut frames = 0usize;
    for chunk in data.chunks(step) {
        decoder.push(chunk);
        while let Some(frame) = decoder.next_frame() {
            frames += 1;
            assert!(frames <= data.len() + 1, "decoder yields frames without consuming input");
            match frame {
                Frame::Message(bytes) => {
                    assert!(bytes.len() <= small.max_message_bytes);
                    let _ = parse_message(&bytes, &small);
                }
                Frame::KeepAlive => {}
                Frame::Error(error, head) => {
                    let _ = error.to_string();
                    let _ = parse_message(&head, &small);
                }
            }
        }
        assert!(decoder.buffered() <= data.len());
    }
    if let Some(Frame::Message(rest)) = decoder.finish() {
        let _ = parse_message(&rest, &small);
    }
});

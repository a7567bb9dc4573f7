//! The RFC 4475 torture messages through the sans-IO endpoint: each as a
//! datagram, and each as a stream through the framer, checked against the
//! table in tests/rfc4475/expected.tsv. (The same table is checked against
//! the running binary over real sockets by the switchboard crate.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Instant;
use switchboard_sip::framing::{Frame, StreamDecoder};
use switchboard_sip::message::ResponseSpec;
use switchboard_sip::{ConnectionId, Endpoint, EndpointConfig, Event, Flow, Limits, Transport};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The 49 messages, byte for byte (a copy of the team's shared corpus, so
/// that a clean clone carries its own test data).
fn corpus_dir() -> PathBuf {
    repo().join("tests/rfc4475/corpus")
}

struct Expectation {
    name: String,
    udp: Vec<u16>,
    tcp: Vec<u16>,
}

fn parse_statuses(field: &str) -> Vec<u16> {
    if field == "-" {
        return Vec::new();
    }
    field.split(',').map(|s| s.parse().unwrap()).collect()
}

fn expectations() -> Vec<Expectation> {
    let table = std::fs::read_to_string(repo().join("tests/rfc4475/expected.tsv")).unwrap();
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Expectation {
                name: cols[0].to_string(),
                udp: parse_statuses(cols[1]),
                tcp: parse_statuses(cols[2]),
            }
        })
        .collect()
}

fn flow(transport: Transport) -> Flow {
    Flow {
        transport,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: "127.0.0.1:40000".parse().unwrap(),
        connection: transport.is_reliable().then_some(ConnectionId(1)),
    }
}

/// Plays the gateway of this issue: every INVITE that reaches the
/// application gets 404, then collects the final statuses sent.
fn final_statuses(ep: &mut Endpoint) -> Vec<u16> {
    let now = Instant::now();
    while let Some(event) = ep.poll_event() {
        if let Event::Request(incoming) = event {
            ep.respond(now, incoming.txn, ResponseSpec::new(404))
                .unwrap();
        }
    }
    // Read the status line only: a response to a malformed request echoes
    // its malformed Via, as RFC 3261 requires, so it need not parse.
    let mut statuses = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        let text = String::from_utf8_lossy(&t.payload);
        let status: u16 = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a response: {text}"));
        if status >= 200 {
            statuses.push(status);
        }
    }
    statuses
}

#[test]
fn every_torture_message_as_a_datagram() {
    let mut failures = Vec::new();
    for e in expectations() {
        let data = std::fs::read(corpus_dir().join(format!("{}.dat", e.name))).unwrap();
        let mut ep = Endpoint::new(EndpointConfig::default());
        ep.handle_message(Instant::now(), flow(Transport::Udp), &data);
        let got = final_statuses(&mut ep);
        if got != e.udp {
            failures.push(format!("{}: expected {:?}, got {:?}", e.name, e.udp, got));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_torture_message_as_a_stream() {
    let mut failures = Vec::new();
    for e in expectations() {
        let data = std::fs::read(corpus_dir().join(format!("{}.dat", e.name))).unwrap();
        let mut ep = Endpoint::new(EndpointConfig::default());
        let mut decoder = StreamDecoder::new(Limits::default());
        decoder.push(&data);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame() {
            frames.push(frame);
        }
        frames.extend(decoder.finish());
        for frame in frames {
            match frame {
                Frame::Message(m) => {
                    ep.handle_message(Instant::now(), flow(Transport::Tcp), &m);
                }
                Frame::Error(err, head) => ep.handle_frame_error(flow(Transport::Tcp), &err, &head),
                Frame::KeepAlive => ep.handle_keepalive(flow(Transport::Tcp)),
            }
        }
        let got = final_statuses(&mut ep);
        if got != e.tcp {
            failures.push(format!("{}: expected {:?}, got {:?}", e.name, e.tcp, got));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_covers_the_whole_corpus() {
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_suffix(".dat").map(str::to_string)
        })
        .collect();
    files.sort();
    let mut table: Vec<String> = expectations().into_iter().map(|e| e.name).collect();
    table.sort();
    assert_eq!(files, table);
    assert_eq!(files.len(), 49);
}

/// The answers whose headers the RFC names too: sdp01's 406 carries a
/// Warning 399 (§3.3.15), the 501s list what we implement in Allow (RFC
/// 3261 §8.2.1), bext01's 420 lists the extensions in Unsupported (§3.3.5).
#[test]
fn answers_carry_the_headers_the_rfc_names() {
    let cases = [
        ("sdp01", 406, "Warning", "399 "),
        ("intmeth", 501, "Allow", "INVITE"),
        ("mismatch02", 501, "Allow", "INVITE"),
        ("bext01", 420, "Unsupported", "nothingSupportsThis"),
    ];
    for (name, status, header, starts) in cases {
        let data = std::fs::read(corpus_dir().join(format!("{name}.dat"))).unwrap();
        let mut ep = Endpoint::new(EndpointConfig::default());
        ep.handle_message(Instant::now(), flow(Transport::Udp), &data);
        let mut answer = None;
        while let Some(t) = ep.poll_transmit() {
            let text = String::from_utf8_lossy(&t.payload).to_string();
            if text.starts_with(&format!("SIP/2.0 {status} ")) {
                answer = Some(text);
            }
        }
        let answer = answer.unwrap_or_else(|| panic!("{name}: no {status}"));
        let value = answer
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(header)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{name}: no {header} in\n{answer}"));
        assert!(
            value.contains(starts),
            "{name}: {header} {value:?} lacks {starts:?}"
        );
    }
}

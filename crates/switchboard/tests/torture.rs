//! RFC 4475 against the running binary over real sockets, UDP and TCP: each
//! message gets what tests/rfc4475/expected.tsv says, and the process
//! answers OPTIONS right after every one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{header, options, repo, split_stream, status_and_call_id, Switchboard};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

struct Case {
    name: String,
    udp: Vec<u16>,
    tcp: Vec<u16>,
}

fn cases() -> Vec<Case> {
    let parse = |f: &str| -> Vec<u16> {
        if f == "-" {
            Vec::new()
        } else {
            f.split(',').map(|s| s.parse().unwrap()).collect()
        }
    };
    std::fs::read_to_string(repo().join("tests/rfc4475/expected.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Case {
                name: cols[0].to_string(),
                udp: parse(cols[1]),
                tcp: parse(cols[2]),
            }
        })
        .collect()
}

fn message(name: &str) -> Vec<u8> {
    std::fs::read(
        repo()
            .join("tests/rfc4475/corpus")
            .join(format!("{name}.dat")),
    )
    .unwrap()
}

/// The Call-ID of a torture message ("" when it has none), which its
/// answers carry back.
fn call_id_of(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default()
}

fn record(
    answers: &mut HashMap<String, Vec<(u16, String)>>,
    call_id: String,
    status: u16,
    text: &str,
) {
    let to = header(text, "To").unwrap_or_default().to_string();
    let seen = answers.entry(call_id).or_default();
    if !seen.iter().any(|(s, t)| *s == status && *t == to) {
        seen.push((status, to));
    }
}

#[test]
fn torture_corpus_over_udp() {
    let mut sb = Switchboard::start(&[]);
    let target = sb.udp.unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = socket.local_addr().unwrap();
    // Call-ID -> distinct answers (status, To tag): a retransmission of an
    // answer (Timer G, as nothing ACKs here) is the same answer again.
    let mut answers: HashMap<String, Vec<(u16, String)>> = HashMap::new();
    let mut failures = Vec::new();
    let mut buf = vec![0u8; 65536];
    let cases = cases();
    for (i, case) in cases.iter().enumerate() {
        let data = message(&case.name);
        let call_id = call_id_of(&data);
        socket.send_to(&data, target).unwrap();
        let probe_id = format!("probe-{i}-{}", case.name);
        socket
            .send_to(options("UDP", local, target, &probe_id).as_bytes(), target)
            .unwrap();
        // Answers are matched by Call-ID: call control answers INVITEs
        // asynchronously, so the probe's 200 may overtake them.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut probe_answered = false;
        while Instant::now() < deadline {
            let have = answers.get(&call_id).map_or(0, Vec::len);
            if probe_answered && have >= case.udp.len() {
                break;
            }
            socket
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let Ok((n, _)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let (status, id) = status_and_call_id(&text);
            if id == probe_id {
                probe_answered = status == 200;
                if status != 200 {
                    failures.push(format!("{}: probe got {status}", case.name));
                }
            } else if status >= 200 {
                record(&mut answers, id, status, &text);
            }
        }
        if !probe_answered {
            failures.push(format!("{}: no 200 to the OPTIONS probe", case.name));
        }
    }
    // Anything late (a second answer where one was due) still counts.
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let (status, id) = status_and_call_id(&text);
        if status >= 200 && !id.starts_with("probe-") {
            record(&mut answers, id, status, &text);
        }
    }
    for case in &cases {
        let got: Vec<u16> = answers
            .remove(&call_id_of(&message(&case.name)))
            .unwrap_or_default()
            .into_iter()
            .map(|(status, _)| status)
            .collect();
        if got != case.udp {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.udp, got
            ));
        }
    }
    assert!(sb.is_running(), "the process survived:\n{}", sb.log());
    assert!(
        failures.is_empty(),
        "{}\n--- log\n{}",
        failures.join("\n"),
        sb.log()
    );
}

#[test]
fn torture_corpus_over_tcp() {
    let mut sb = Switchboard::start(&[]);
    let target = sb.tcp.unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        // A fresh connection per message, half-closed after it: a message
        // whose length cannot be known is answered at end of stream.
        let mut tcp = TcpStream::connect(target).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(&message(&case.name)).unwrap();
        tcp.shutdown(Shutdown::Write).unwrap();
        let mut data = Vec::new();
        if let Err(e) = tcp.read_to_end(&mut data) {
            failures.push(format!(
                "{}: connection not closed by the server ({e})",
                case.name
            ));
        }
        let got: Vec<u16> = split_stream(&data)
            .iter()
            .map(|r| status_and_call_id(r).0)
            .filter(|s| *s >= 200)
            .collect();
        if got != case.tcp {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.tcp, got
            ));
        }
        let mut probe = TcpStream::connect(target).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let local = probe.local_addr().unwrap();
        let probe_id = format!("tcp-probe-{i}");
        probe
            .write_all(options("TCP", local, target, &probe_id).as_bytes())
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = probe.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if !text.starts_with("SIP/2.0 200 ") {
            failures.push(format!("{}: probe got {text:?}", case.name));
        }
    }
    assert!(sb.is_running(), "the process survived:\n{}", sb.log());
    assert!(
        failures.is_empty(),
        "{}\n--- log\n{}",
        failures.join("\n"),
        sb.log()
    );
}

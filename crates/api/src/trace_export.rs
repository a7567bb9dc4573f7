//! A call's SIP trace as files an operator's tools open: plain text (one
//! block per message with time, direction and addresses) and pcap
//! (LINKTYPE_RAW: each message in an IPv4 or IPv6 packet, UDP for UDP and
//! TCP segments with running sequence numbers for TCP and TLS, so
//! Wireshark, tshark and sngrep draw the ladder).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use etherparse::PacketBuilder;
use switchboard_store::{CallTrace, TracedMessage};

/// pcap's link type for packets that start with an IP header.
const LINKTYPE_RAW: u32 = 101;
/// The largest TCP segment written; longer messages span segments.
const MAX_SEGMENT: usize = 16 * 1024;

/// The trace as text: a header line per message, then the message.
pub fn to_text(trace: &CallTrace) -> String {
    let mut out = String::new();
    for message in &trace.messages {
        let arrow = if message.sent { "->" } else { "<-" };
        let _ = writeln!(
            out,
            "{} {} {} {} {} ({} bytes)",
            rfc3339_ns(message.at_ns),
            message.transport.to_ascii_uppercase(),
            message.local,
            arrow,
            message.remote,
            message.data.len()
        );
        out.push_str(&String::from_utf8_lossy(&message.data));
        if !message.data.ends_with(b"\n") {
            out.push('\n');
        }
        out.push('\n');
    }
    if trace.truncated {
        out.push_str("[trace truncated: later messages passed the per-call size cap]\n");
    }
    out
}

/// The trace as a pcap file.
pub fn to_pcap(trace: &CallTrace) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        24 + trace
            .messages
            .iter()
            .map(|m| m.data.len() + 16 + 60)
            .sum::<usize>(),
    );
    // Global header: magic (microseconds), version 2.4, GMT offset 0,
    // accuracy 0, snaplen, link type.
    out.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    let mut streams = TcpSequences::default();
    for message in &trace.messages {
        for packet in packets(message, &mut streams) {
            record(&mut out, message.at_ns, &packet);
        }
    }
    out
}

fn record(out: &mut Vec<u8>, at_ns: i64, packet: &[u8]) {
    let at_ns = at_ns.max(0);
    let secs = u32::try_from(at_ns / 1_000_000_000).unwrap_or(u32::MAX);
    let micros = u32::try_from((at_ns % 1_000_000_000) / 1000).unwrap_or(0);
    let len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&secs.to_le_bytes());
    out.extend_from_slice(&micros.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(packet);
}

/// The next sequence number of each direction of each TCP connection.
#[derive(Default)]
struct TcpSequences {
    next: HashMap<(SocketAddr, SocketAddr), u32>,
}

impl TcpSequences {
    /// Takes `len` bytes of the (from, to) stream: returns (seq, ack).
    fn take(&mut self, from: SocketAddr, to: SocketAddr, len: usize) -> (u32, u32) {
        let seq = *self.next.entry((from, to)).or_insert(1);
        let ack = *self.next.entry((to, from)).or_insert(1);
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.next.insert((from, to), seq.wrapping_add(len));
        (seq, ack)
    }
}

/// The IP packets carrying one message (several TCP segments for a long
/// message on a stream); none when its addresses do not parse.
fn packets(message: &TracedMessage, streams: &mut TcpSequences) -> Vec<Vec<u8>> {
    let (Ok(local), Ok(remote)) = (
        message.local.parse::<SocketAddr>(),
        message.remote.parse::<SocketAddr>(),
    ) else {
        return Vec::new();
    };
    let (from, to) = if message.sent {
        (local, remote)
    } else {
        (remote, local)
    };
    let (from, to) = same_family(from, to);
    if message.transport == "udp" {
        return build(from, to, None, &message.data).into_iter().collect();
    }
    message
        .data
        .chunks(MAX_SEGMENT)
        .filter_map(|segment| {
            let (seq, ack) = streams.take(from, to, segment.len());
            build(from, to, Some((seq, ack)), segment)
        })
        .collect()
}

/// Both addresses in one family (an IPv4 peer seen on a dual-stack socket
/// as `::ffff:a.b.c.d`, or an unspecified local address of the other kind).
fn same_family(from: SocketAddr, to: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (from, to) = (canonical(from), canonical(to));
    match (from.ip(), to.ip()) {
        (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => {
            let six = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
                IpAddr::V6(_) => a,
            };
            (six(from), six(to))
        }
        _ => (from, to),
    }
}

fn build(
    from: SocketAddr,
    to: SocketAddr,
    tcp: Option<(u32, u32)>,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let ip = match (from.ip(), to.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => PacketBuilder::ipv4(a.octets(), b.octets(), 64),
        (IpAddr::V6(a), IpAddr::V6(b)) => PacketBuilder::ipv6(a.octets(), b.octets(), 64),
        _ => return None,
    };
    let mut packet = Vec::with_capacity(payload.len() + 60);
    let written = match tcp {
        None => {
            let udp = ip.udp(from.port(), to.port());
            packet.reserve(udp.size(payload.len()));
            udp.write(&mut packet, payload).is_ok()
        }
        Some((seq, ack)) => {
            let segment = ip.tcp(from.port(), to.port(), seq, 65_535).psh().ack(ack);
            segment.write(&mut packet, payload).is_ok()
        }
    };
    written.then_some(packet)
}

/// `2026-12-05T03:40:00.123456Z` for ns since the Unix epoch.
pub fn rfc3339_ns(at_ns: i64) -> String {
    let at_ns = at_ns.max(0);
    let secs = at_ns / 1_000_000_000;
    let micros = (at_ns % 1_000_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sent: bool, transport: &str, data: &str) -> TracedMessage {
        TracedMessage {
            at_ns: 1_764_906_000_123_456_789,
            sent,
            transport: transport.into(),
            local: "127.0.0.1:5060".into(),
            remote: "127.0.0.2:40000".into(),
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn text_shows_time_direction_and_the_message() {
        let trace = CallTrace {
            messages: vec![
                message(false, "udp", "INVITE sip:a SIP/2.0\r\n\r\n"),
                message(true, "udp", "SIP/2.0 100 Trying\r\n\r\n"),
            ],
            truncated: true,
        };
        let text = to_text(&trace);
        assert!(text.starts_with("2025-12-05T03:40:00.123456Z UDP 127.0.0.1:5060 <- 127.0.0.2:40000 (24 bytes)\nINVITE"), "{text}");
        assert!(text.contains("-> 127.0.0.2:40000 (22 bytes)\nSIP/2.0 100 Trying"));
        assert!(text.ends_with("size cap]\n"));
    }

    #[test]
    fn pcap_has_a_header_and_one_record_per_udp_message() {
        let trace = CallTrace {
            messages: vec![
                message(false, "udp", "INVITE sip:a SIP/2.0\r\n\r\n"),
                message(true, "udp", "SIP/2.0 100 Trying\r\n\r\n"),
            ],
            truncated: false,
        };
        let pcap = to_pcap(&trace);
        assert_eq!(&pcap[..4], &0xa1b2_c3d4_u32.to_le_bytes());
        assert_eq!(&pcap[20..24], &LINKTYPE_RAW.to_le_bytes());
        let first_len = u32::from_le_bytes([pcap[32], pcap[33], pcap[34], pcap[35]]) as usize;
        assert_eq!(first_len, 20 + 8 + 24);
        let packet = &pcap[40..40 + first_len];
        assert_eq!(packet[0] >> 4, 4, "IPv4");
        assert_eq!(&packet[12..16], &[127, 0, 0, 2], "received: from the peer");
        assert_eq!(u16::from_be_bytes([packet[22], packet[23]]), 5060);
        let second = 40 + first_len;
        assert_eq!(pcap.len(), second + 16 + 20 + 8 + 22);
    }

    #[test]
    fn tcp_segments_carry_running_sequence_numbers() {
        let trace = CallTrace {
            messages: vec![
                message(false, "tcp", "INVITE sip:a SIP/2.0\r\n\r\n"),
                message(false, "tcp", "ACK sip:a SIP/2.0\r\n\r\n"),
            ],
            truncated: false,
        };
        let pcap = to_pcap(&trace);
        let first_len = u32::from_le_bytes([pcap[32], pcap[33], pcap[34], pcap[35]]) as usize;
        let seq =
            |packet: &[u8]| u32::from_be_bytes([packet[24], packet[25], packet[26], packet[27]]);
        let first = &pcap[40..40 + first_len];
        let second = &pcap[40 + first_len + 16..];
        assert_eq!(first[9], 6, "TCP");
        assert_eq!(seq(first), 1);
        assert_eq!(seq(second), 1 + 24);
    }

    #[test]
    fn mixed_families_become_ipv6_and_bad_addresses_are_skipped() {
        let mut six = message(false, "udp", "OPTIONS sip:a SIP/2.0\r\n\r\n");
        six.local = "[::1]:5060".into();
        let mut bad = six.clone();
        bad.remote = "nowhere".into();
        let pcap = to_pcap(&CallTrace {
            messages: vec![six, bad],
            truncated: false,
        });
        assert_eq!(pcap[40] >> 4, 6);
        let len = u32::from_le_bytes([pcap[32], pcap[33], pcap[34], pcap[35]]) as usize;
        assert_eq!(pcap.len(), 40 + len, "the unparsable one is not written");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_ns(951_782_400_000_001_000),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(rfc3339_ns(-5), "1970-01-01T00:00:00.000000Z");
    }
}

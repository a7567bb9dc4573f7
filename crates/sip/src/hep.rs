//! HEP3 (the Homer Encapsulation Protocol, version 3): every SIP message
//! the transport taps, sent as one UDP datagram to a capture server
//! (Homer's heplify-server, sngrep `-L`, OpenSIPS/Kamailio siptrace).
//!
//! A HEP3 packet is `HEP3`, its total length, then chunks of vendor (0),
//! type, length (header included) and value, all in network byte order.
//! Sending is fire-and-forget from the transport's task: a full socket
//! buffer drops the copy (counted), never delays signalling.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::tap::{MessageTap, TappedMessage};
use crate::Transport;

/// Where and how messages are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepConfig {
    /// The collector's UDP address.
    pub collector: SocketAddr,
    /// The capture agent ID Homer shows for this node.
    pub capture_id: u32,
    /// The collector's password (chunk 14), if it wants one.
    pub password: Option<String>,
}

/// HEP3 chunk types (vendor 0).
mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTOCOL: u16 = 0x0002;
    pub const IPV4_SOURCE: u16 = 0x0003;
    pub const IPV4_DESTINATION: u16 = 0x0004;
    pub const IPV6_SOURCE: u16 = 0x0005;
    pub const IPV6_DESTINATION: u16 = 0x0006;
    pub const SOURCE_PORT: u16 = 0x0007;
    pub const DESTINATION_PORT: u16 = 0x0008;
    pub const SECONDS: u16 = 0x0009;
    pub const MICROSECONDS: u16 = 0x000a;
    pub const PROTOCOL_TYPE: u16 = 0x000b;
    pub const CAPTURE_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// Protocol type 1: SIP.
const PROTOCOL_SIP: u8 = 1;

fn push_chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) -> Option<()> {
    let len = u16::try_from(value.len().checked_add(6)?).ok()?;
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Some(())
}

/// One message as a HEP3 packet; `None` when it does not fit in one
/// (a message near 64 KiB).
pub fn encode(
    message: &TappedMessage<'_>,
    capture_id: u32,
    password: Option<&str>,
) -> Option<Vec<u8>> {
    let (source, destination) = if message.sent {
        (message.local, message.remote)
    } else {
        (message.remote, message.local)
    };
    let (source_ip, destination_ip) =
        match (source.ip().to_canonical(), destination.ip().to_canonical()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
            (s, d) => (IpAddr::V6(v6(s)), IpAddr::V6(v6(d))),
        };
    let since_epoch = message.at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = Vec::with_capacity(message.data.len() + 128);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&0u16.to_be_bytes());
    match (source_ip, destination_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            push_chunk(&mut out, chunk::IP_FAMILY, &[2])?;
            push_chunk(&mut out, chunk::IPV4_SOURCE, &s.octets())?;
            push_chunk(&mut out, chunk::IPV4_DESTINATION, &d.octets())?;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            push_chunk(&mut out, chunk::IP_FAMILY, &[10])?;
            push_chunk(&mut out, chunk::IPV6_SOURCE, &s.octets())?;
            push_chunk(&mut out, chunk::IPV6_DESTINATION, &d.octets())?;
        }
        _ => return None,
    }
    let protocol = match message.transport {
        Transport::Udp => 17,
        Transport::Tcp | Transport::Tls => 6,
    };
    push_chunk(&mut out, chunk::IP_PROTOCOL, &[protocol])?;
    push_chunk(&mut out, chunk::SOURCE_PORT, &source.port().to_be_bytes())?;
    push_chunk(
        &mut out,
        chunk::DESTINATION_PORT,
        &destination.port().to_be_bytes(),
    )?;
    let seconds = u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX);
    push_chunk(&mut out, chunk::SECONDS, &seconds.to_be_bytes())?;
    push_chunk(
        &mut out,
        chunk::MICROSECONDS,
        &since_epoch.subsec_micros().to_be_bytes(),
    )?;
    push_chunk(&mut out, chunk::PROTOCOL_TYPE, &[PROTOCOL_SIP])?;
    push_chunk(&mut out, chunk::CAPTURE_ID, &capture_id.to_be_bytes())?;
    if let Some(password) = password {
        push_chunk(&mut out, chunk::AUTH_KEY, password.as_bytes())?;
    }
    if let Some(call_id) = message.call_id {
        push_chunk(&mut out, chunk::CORRELATION_ID, call_id.as_bytes())?;
    }
    push_chunk(&mut out, chunk::PAYLOAD, message.data)?;
    let total = u16::try_from(out.len()).ok()?;
    out[4..6].copy_from_slice(&total.to_be_bytes());
    Some(out)
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Sends every tapped message to a HEP collector.
pub struct HepExporter {
    socket: UdpSocket,
    config: HepConfig,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl HepExporter {
    /// A non-blocking socket towards the collector.
    pub fn new(config: HepConfig) -> std::io::Result<HepExporter> {
        let bind: SocketAddr = if config.collector.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        socket.connect(config.collector)?;
        Ok(HepExporter {
            socket,
            config,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Packets sent and packets dropped (too large, or the socket full).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

impl MessageTap for HepExporter {
    fn tapped(&self, message: TappedMessage<'_>) {
        let packet = encode(
            &message,
            self.config.capture_id,
            self.config.password.as_deref(),
        );
        let sent = packet.is_some_and(|p| self.socket.send(&p).is_ok());
        let counter = if sent { &self.sent } else { &self.dropped };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Several taps as one (per-call traces and a HEP collector).
pub struct Taps(pub Vec<Arc<dyn MessageTap>>);

impl MessageTap for Taps {
    fn tapped(&self, message: TappedMessage<'_>) {
        for tap in &self.0 {
            tap.tapped(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn chunks(packet: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 6;
        while at + 6 <= packet.len() {
            let kind = u16::from_be_bytes([packet[at + 2], packet[at + 3]]);
            let len = usize::from(u16::from_be_bytes([packet[at + 4], packet[at + 5]]));
            out.push((kind, packet[at + 6..at + len].to_vec()));
            at += len;
        }
        out
    }

    #[test]
    fn a_received_udp_message_is_one_hep3_packet_from_the_peer() {
        let data = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: abc\r\n\r\n";
        let message = TappedMessage {
            at: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            sent: false,
            transport: Transport::Udp,
            local: "192.0.2.1:5060".parse().unwrap_or_else(|_| unreachable!()),
            remote: "198.51.100.7:40000"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            data,
            call_id: crate::tap::peek_call_id(data),
        };
        let packet = encode(&message, 2001, Some("pw")).unwrap_or_default();
        assert_eq!(&packet[..4], b"HEP3");
        assert_eq!(
            usize::from(u16::from_be_bytes([packet[4], packet[5]])),
            packet.len()
        );
        let chunks = chunks(&packet);
        let get = |kind: u16| {
            chunks
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(chunk::IP_FAMILY), Some(vec![2]));
        assert_eq!(get(chunk::IP_PROTOCOL), Some(vec![17]));
        assert_eq!(get(chunk::IPV4_SOURCE), Some(vec![198, 51, 100, 7]));
        assert_eq!(get(chunk::IPV4_DESTINATION), Some(vec![192, 0, 2, 1]));
        assert_eq!(
            get(chunk::SOURCE_PORT),
            Some(40000u16.to_be_bytes().to_vec())
        );
        assert_eq!(
            get(chunk::DESTINATION_PORT),
            Some(5060u16.to_be_bytes().to_vec())
        );
        assert_eq!(
            get(chunk::SECONDS),
            Some(1_700_000_000u32.to_be_bytes().to_vec())
        );
        assert_eq!(
            get(chunk::MICROSECONDS),
            Some(123_456u32.to_be_bytes().to_vec())
        );
        assert_eq!(get(chunk::PROTOCOL_TYPE), Some(vec![1]));
        assert_eq!(get(chunk::CAPTURE_ID), Some(2001u32.to_be_bytes().to_vec()));
        assert_eq!(get(chunk::AUTH_KEY), Some(b"pw".to_vec()));
        assert_eq!(get(chunk::CORRELATION_ID), Some(b"abc".to_vec()));
        assert_eq!(get(chunk::PAYLOAD), Some(data.to_vec()));
    }

    #[test]
    fn mixed_families_go_as_ipv6_and_oversize_messages_are_not_sent() {
        let big = vec![b'x'; 70_000];
        let mut message = TappedMessage {
            at: SystemTime::now(),
            sent: true,
            transport: Transport::Tls,
            local: "[::1]:5061".parse().unwrap_or_else(|_| unreachable!()),
            remote: "127.0.0.1:6000".parse().unwrap_or_else(|_| unreachable!()),
            data: b"SIP/2.0 200 OK\r\n\r\n",
            call_id: None,
        };
        let packet = encode(&message, 1, None).unwrap_or_default();
        let chunks = chunks(&packet);
        assert!(chunks.contains(&(chunk::IP_FAMILY, vec![10])));
        assert!(chunks.contains(&(chunk::IP_PROTOCOL, vec![6])));
        assert!(!chunks.iter().any(|(k, _)| *k == chunk::AUTH_KEY));
        message.data = &big;
        assert!(encode(&message, 1, None).is_none());
    }
}

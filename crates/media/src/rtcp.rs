//! RTCP sender and receiver reports (RFC 3550 §6.4) and the statistics they
//! carry: loss, jitter and round-trip time.

use bytes::Bytes;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use rtc_shared::marshal::Marshal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A wall-clock time as a 64-bit NTP timestamp.
pub fn ntp_timestamp(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// The middle 32 bits of an NTP timestamp (units of 1/65536 s), as LSR/DLSR use.
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// RFC 3550 appendix A.3 reception accounting for one source.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceptionCounter {
    base_seq: Option<u64>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
}

impl ReceptionCounter {
    /// Counts a packet with extended sequence `ext_seq`.
    pub fn on_packet(&mut self, ext_seq: u64) {
        if self.base_seq.is_none_or(|b| ext_seq < b) {
            self.base_seq = Some(ext_seq);
        }
        self.received += 1;
    }

    /// Starts over (a new SSRC).
    pub fn reset(&mut self) {
        *self = ReceptionCounter::default();
    }

    /// Packets received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected given the highest sequence seen.
    pub fn expected(&self, highest: u64) -> u64 {
        self.base_seq.map_or(0, |b| highest.saturating_sub(b) + 1)
    }

    /// Cumulative loss (negative with duplicates, as RFC 3550 allows).
    pub fn cumulative_lost(&self, highest: u64) -> i64 {
        self.expected(highest) as i64 - self.received as i64
    }

    /// Loss fraction since the last call (8-bit fixed point, /256), and
    /// starts a new interval.
    pub fn take_fraction_lost(&mut self, highest: u64) -> u8 {
        let expected = self.expected(highest);
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost = expected_interval.saturating_sub(received_interval);
        if expected_interval == 0 || lost == 0 {
            0
        } else {
            ((lost << 8) / expected_interval).min(255) as u8
        }
    }
}

/// What one report block from the peer says about our stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// Fraction of our packets the peer lost in its last interval (0..1).
    pub fraction_lost: f32,
    /// Cumulative packets of ours the peer lost.
    pub packets_lost: u32,
    /// Jitter the peer measured on our stream, in RTP clock units.
    pub jitter: u32,
    /// Round-trip time, when the peer echoed one of our sender reports.
    pub round_trip: Option<Duration>,
}

/// Inputs for one outgoing report.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// Our SSRC.
    pub ssrc: u32,
    /// Present when we sent RTP since the last report: (NTP time, RTP time,
    /// packets sent, payload octets sent).
    pub sender: Option<(u64, u32, u32, u32)>,
    /// The reception block, when we hear the peer.
    pub reception: Option<ReceptionReport>,
}

/// Builds a compound RTCP packet: SR or RR, then SDES CNAME (RFC 3550 §6.1).
pub fn build_report(input: &ReportInput, cname: &str) -> Option<Vec<u8>> {
    let reports: Vec<ReceptionReport> = input.reception.iter().cloned().collect();
    let mut out = match input.sender {
        Some((ntp_time, rtp_time, packet_count, octet_count)) => SenderReport {
            ssrc: input.ssrc,
            ntp_time,
            rtp_time,
            packet_count,
            octet_count,
            reports,
            profile_extensions: Bytes::new(),
        }
        .marshal()
        .ok()?,
        None => ReceiverReport {
            ssrc: input.ssrc,
            reports,
            profile_extensions: Bytes::new(),
        }
        .marshal()
        .ok()?,
    }
    .to_vec();
    let sdes = SourceDescription {
        chunks: vec![SourceDescriptionChunk {
            source: input.ssrc,
            items: vec![SourceDescriptionItem {
                sdes_type: SdesType::SdesCname,
                text: Bytes::copy_from_slice(cname.as_bytes()),
            }],
        }],
    }
    .marshal()
    .ok()?;
    out.extend_from_slice(&sdes);
    Some(out)
}

/// What an incoming compound packet told us.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedReport {
    /// From a sender report: the peer's SSRC and the middle of its NTP time.
    pub sender_report: Option<(u32, u32)>,
    /// The block about `our_ssrc`, if any.
    pub about_us: Option<ReceptionReport>,
    /// A BYE was included.
    pub bye: bool,
}

/// Parses a compound RTCP packet; `None` if it is malformed.
///
/// Walks the compound by each packet's length field and reads SR, RR and
/// BYE; other types (SDES, APP, XR, feedback) are skipped, so one packet type
/// we don't model never costs us the reports beside it.
pub fn parse_report(data: &[u8], our_ssrc: u32) -> Option<ParsedReport> {
    let mut parsed = ParsedReport::default();
    let mut rest = data;
    if rest.len() < 8 {
        return None;
    }
    while !rest.is_empty() {
        if rest.len() < 4 || rest[0] >> 6 != 2 {
            return None;
        }
        let count = usize::from(rest[0] & 0x1f);
        let packet_type = rest[1];
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        let packet = rest.get(..len)?;
        rest = &rest[len..];
        let blocks_at = match packet_type {
            200 => {
                let sr = packet.get(4..28)?;
                let ssrc = u32::from_be_bytes(sr[0..4].try_into().ok()?);
                let ntp = u64::from_be_bytes(sr[4..12].try_into().ok()?);
                parsed.sender_report = Some((ssrc, ntp_middle(ntp)));
                28
            }
            201 => 8,
            203 => {
                parsed.bye = true;
                continue;
            }
            _ => continue,
        };
        for i in 0..count {
            let block = packet.get(blocks_at + 24 * i..blocks_at + 24 * (i + 1))?;
            let word = |at: usize| {
                u32::from_be_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
            };
            if word(0) == our_ssrc && parsed.about_us.is_none() {
                parsed.about_us = Some(ReceptionReport {
                    ssrc: word(0),
                    fraction_lost: block[4],
                    total_lost: word(4) & 0x00ff_ffff,
                    last_sequence_number: word(8),
                    jitter: word(12),
                    last_sender_report: word(16),
                    delay: word(20),
                });
            }
        }
    }
    Some(parsed)
}

/// Round-trip time from a report block: now − LSR − DLSR (RFC 3550 §6.4.1).
pub fn round_trip(block: &ReceptionReport, now_ntp_middle: u32) -> Option<Duration> {
    if block.last_sender_report == 0 {
        return None;
    }
    let rtt = now_ntp_middle
        .wrapping_sub(block.last_sender_report)
        .wrapping_sub(block.delay);
    // Above a minute the echo is bogus (clock step or garbage).
    (rtt < 60 << 16).then(|| Duration::from_micros(u64::from(rtt) * 1_000_000 / 65536))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_fraction_and_cumulative_loss_follow_rfc3550() {
        let mut counter = ReceptionCounter::default();
        for seq in (1000..1100).filter(|s| s % 10 != 5) {
            counter.on_packet(seq);
        }
        assert_eq!(counter.cumulative_lost(1099), 10);
        assert_eq!(counter.take_fraction_lost(1099), 25, "10 % of 256");
        assert_eq!(
            counter.take_fraction_lost(1099),
            0,
            "nothing new in the next interval"
        );
    }

    #[test]
    fn report_round_trip_gives_rtt() {
        let sent_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sr = build_report(
            &ReportInput {
                ssrc: 1,
                sender: Some((ntp_timestamp(sent_at), 160, 10, 1600)),
                reception: None,
            },
            "a@switchboard",
        )
        .unwrap();
        let parsed = parse_report(&sr, 2).unwrap();
        let (ssrc, lsr) = parsed.sender_report.unwrap();
        assert_eq!(ssrc, 1);
        // The peer holds it 100 ms, and its reply reaches us 250 ms after we sent.
        let block = ReceptionReport {
            ssrc: 1,
            fraction_lost: 64,
            total_lost: 3,
            last_sequence_number: 9,
            jitter: 80,
            last_sender_report: lsr,
            delay: 6554,
        };
        let rr = build_report(
            &ReportInput {
                ssrc: 2,
                sender: None,
                reception: Some(block),
            },
            "b",
        )
        .unwrap();
        let parsed = parse_report(&rr, 1).unwrap();
        let about_us = parsed.about_us.unwrap();
        let now = ntp_middle(ntp_timestamp(sent_at + Duration::from_millis(250)));
        let rtt = round_trip(&about_us, now).unwrap();
        assert!((rtt.as_millis() as i64 - 150).abs() <= 1, "{rtt:?}");
        assert!(parse_report(&[0x80, 200, 0, 9], 1).is_none());
        assert!(
            parse_report(&sr[..sr.len() - 3], 2).is_none(),
            "truncated compound"
        );
    }

    #[test]
    fn parses_baresips_bye_with_reason_and_skips_unknown_types() {
        // BYE with a reason, then SDES, as baresip sends at hang-up.
        let mut compound = vec![
            0x81, 0xcb, 0, 3, 1, 2, 3, 4, 4, b'A', b'd', b'j', b'o', 0, 0, 0,
        ];
        compound.extend_from_slice(&[0x81, 0xca, 0, 2, 1, 2, 3, 4, 1, 2, b'h', b'i']);
        compound.extend_from_slice(&[0x80, 0xcc, 0, 2, 1, 2, 3, 4, b'P', b'I', b'N', b'G']);
        let parsed = parse_report(&compound, 9).unwrap();
        assert!(parsed.bye);
        assert_eq!(parsed.sender_report, None);
    }
}

//! Zero-copy RTP header parsing and writing (RFC 3550 §5.1), and the
//! RTP/RTCP demultiplexing rule of RFC 5761 §4.

/// A parsed view of an RTP packet borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp in the payload's clock.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

/// Why a datagram is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpParseError {
    /// Fewer than 12 bytes, or CSRCs/extension beyond the end.
    #[error("truncated RTP packet")]
    Truncated,
    /// Version field not 2.
    #[error("RTP version is not 2")]
    BadVersion,
    /// Padding length larger than the payload.
    #[error("RTP padding exceeds payload")]
    BadPadding,
}

/// Size of the fixed RTP header we write (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// Parses an RTP packet without copying.
pub fn parse_rtp(data: &[u8]) -> Result<RtpView<'_>, RtpParseError> {
    if data.len() < RTP_HEADER_LEN {
        return Err(RtpParseError::Truncated);
    }
    if data[0] >> 6 != 2 {
        return Err(RtpParseError::BadVersion);
    }
    let has_padding = data[0] & 0x20 != 0;
    let has_extension = data[0] & 0x10 != 0;
    let csrc_count = usize::from(data[0] & 0x0f);
    let mut offset = RTP_HEADER_LEN + 4 * csrc_count;
    if has_extension {
        let words = data
            .get(offset + 2..offset + 4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(RtpParseError::Truncated)?;
        offset += 4 + 4 * words;
    }
    if offset > data.len() {
        return Err(RtpParseError::Truncated);
    }
    let mut end = data.len();
    if has_padding {
        let pad = usize::from(data[data.len() - 1]);
        if pad == 0 || offset + pad > end {
            return Err(RtpParseError::BadPadding);
        }
        end -= pad;
    }
    Ok(RtpView {
        marker: data[1] & 0x80 != 0,
        payload_type: data[1] & 0x7f,
        sequence: u16::from_be_bytes([data[2], data[3]]),
        timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        payload: &data[offset..end],
    })
}

/// Writes a 12-byte RTP header into `out[..12]`.
pub fn write_rtp_header(
    out: &mut [u8],
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    if out.len() < RTP_HEADER_LEN {
        return;
    }
    out[0] = 0x80;
    out[1] = (u8::from(marker) << 7) | (payload_type & 0x7f);
    out[2..4].copy_from_slice(&sequence.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// True when a datagram on a multiplexed port is RTCP (packet types 192–223 by RFC 5761).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && (192..=223).contains(&data[1])
}

/// Extends 16-bit sequence numbers to a monotonic 64-bit counter, treating a
/// jump back of less than half the space as reordering.
#[derive(Debug, Clone, Copy, Default)]
pub struct SequenceExtender {
    highest: Option<u64>,
}

impl SequenceExtender {
    /// The extended value for `seq`, relative to the highest seen so far.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            // Start high enough that a reordered packet before the first one stays positive.
            let first = (1u64 << 16) + u64::from(seq);
            self.highest = Some(first);
            return first;
        };
        let base = highest & !0xffff;
        let candidates = [
            base.wrapping_sub(1 << 16) | u64::from(seq),
            base | u64::from(seq),
            (base + (1 << 16)) | u64::from(seq),
        ];
        let extended = candidates
            .into_iter()
            .min_by_key(|c| c.abs_diff(highest))
            .unwrap_or(base | u64::from(seq));
        if extended > highest {
            self.highest = Some(extended);
        }
        extended
    }

    /// Forgets history (a new SSRC).
    pub fn reset(&mut self) {
        self.highest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_a_header() {
        let mut buf = [0u8; 20];
        write_rtp_header(&mut buf, true, 96, 65535, 123_456, 0xdead_beef);
        buf[12..].copy_from_slice(b"payload!");
        let view = parse_rtp(&buf).unwrap();
        assert!(view.marker);
        assert_eq!(view.payload_type, 96);
        assert_eq!(view.sequence, 65535);
        assert_eq!(view.timestamp, 123_456);
        assert_eq!(view.ssrc, 0xdead_beef);
        assert_eq!(view.payload, b"payload!");
    }

    #[test]
    fn skips_csrcs_extension_and_padding() {
        let mut pkt = vec![0x80 | 0x20 | 0x10 | 0x01, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        pkt.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, one word
        pkt.extend_from_slice(b"abc");
        pkt.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let view = parse_rtp(&pkt).unwrap();
        assert_eq!(view.payload, b"abc");
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(parse_rtp(&[0x80; 5]), Err(RtpParseError::Truncated));
        assert_eq!(parse_rtp(&[0x40; 12]), Err(RtpParseError::BadVersion));
        let mut pkt = [0u8; 13];
        pkt[0] = 0xa0;
        pkt[12] = 200;
        assert_eq!(parse_rtp(&pkt), Err(RtpParseError::BadPadding));
    }

    #[test]
    fn sequence_extension_survives_wrap_and_reordering() {
        let mut ext = SequenceExtender::default();
        let a = ext.extend(65534);
        assert_eq!(ext.extend(65535), a + 1);
        assert_eq!(ext.extend(1), a + 3);
        assert_eq!(ext.extend(0), a + 2, "late packet from before the wrap");
        assert_eq!(
            ext.extend(65533),
            a - 1,
            "late packet from before the first"
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_rtp(&data);
        }
    }
}

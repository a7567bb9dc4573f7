//! The sans-IO media session (switchboard_media::session::MediaSession) fed
//! datagrams from the network: SRTP unprotect, RTP/RTCP demultiplexing,
//! latching, the jitter buffer, RFC 4733 DTMF, the codec decoders (G.711,
//! G.722, libopus) and resampling to the room rate, RTCP reports.
//!
//! Input: one selector byte (codec, SRTP on/off, rtcp-mux, latching), then
//! records `[flags u8][len u16 BE][len bytes]`. Flag bit 0: arrives on the
//! RTCP port; bit 1: from another address than the SDP's; bit 2: when SRTP
//! is on, protect the datagram with the peer's context first (so it passes
//! authentication); bit 3: 1 s passes before it instead of 20 ms. After each
//! datagram the session ticks once (one 20 ms frame out, one in), and events
//! and transmits are drained.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchboard_media::codec::CodecKind;
use switchboard_media::rtp::is_rtcp;
use switchboard_media::sdp::{Direction, NegotiatedMedia, NegotiatedSrtp};
use switchboard_media::session::{Channel, Latching, MediaSession, SessionConfig};
use switchboard_media::srtp::{SrtpKey, SrtpSession, SrtpSuite};

fn key(suite: SrtpSuite, fill: u8) -> SrtpKey {
    let len = suite.key_len() + suite.salt_len();
    SrtpKey {
        suite,
        key_and_salt: (0..len).map(|i| fill.wrapping_add(i as u8)).collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let (codec, pt) = match selector & 3 {
        0 => (CodecKind::Pcmu, 0),
        1 => (CodecKind::Pcma, 8),
        2 => (CodecKind::G722, 9),
        _ => (CodecKind::Opus, 111),
    };
    let srtp_on = selector & 4 != 0;
    let suite = if selector & 32 != 0 {
        SrtpSuite::AeadAes128Gcm
    } else {
        SrtpSuite::AesCm128HmacSha1_80
    };
    let rtcp_mux = selector & 8 != 0;
    let latching = match (selector >> 4) & 3 {
        0 => Latching::Auto,
        1 => Latching::On,
        _ => Latching::Off,
    };
    let remote_rtp: SocketAddr = "198.51.100.30:40000".parse().expect("literal");
    let remote_rtcp: SocketAddr = if rtcp_mux {
        remote_rtp
    } else {
        "198.51.100.30:40001".parse().expect("literal")
    };
    let other: SocketAddr = "192.0.2.99:50000".parse().expect("literal");
    let local_key = key(suite, 0x21);
    let remote_key = key(suite, 0x5a);
    let media = NegotiatedMedia {
        codec,
        send_payload_type: pt,
        receive_payload_type: pt,
        telephone_event: Some((101, 101)),
        telephone_event_rate: codec.clock_rate(),
        remote_rtp,
        remote_rtcp,
        rtcp_mux,
        direction: Direction::SendRecv,
        remote_direction: Direction::SendRecv,
        srtp: srtp_on.then(|| NegotiatedSrtp {
            local: local_key.clone(),
            remote: remote_key.clone(),
        }),
        remote_ptime_ms: Some(20),
    };
    let config = SessionConfig {
        latching,
        ..SessionConfig::default()
    };
    let start = Instant::now();
    let mut session = match MediaSession::new(config, media, start) {
        Ok(s) => s,
        Err(e) => panic!("session setup failed: {e}"),
    };
    // The peer's context: protects with its key, which is our remote key.
    let mut peer = SrtpSession::new(&remote_key, &local_key).expect("fixed keys are valid");
    let mut protected = vec![0u8; 1600];
    let mut inbound = vec![0i16; session.room_frame_len()];
    let outbound = vec![1000i16; session.room_frame_len()];
    let mut now = start;

    let mut records = 0;
    while rest.len() >= 3 && records < 32 {
        records += 1;
        let flags = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let take = len.min(rest.len() - 3);
        let datagram = &rest[3..3 + take];
        rest = &rest[3 + take..];

        now += if flags & 8 != 0 {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(20)
        };
        let channel = if flags & 1 != 0 && !rtcp_mux {
            Channel::Rtcp
        } else {
            Channel::Rtp
        };
        let from = match (flags & 2 != 0, channel) {
            (true, _) => other,
            (false, Channel::Rtp) => remote_rtp,
            (false, Channel::Rtcp) => remote_rtcp,
        };
        let wire: &[u8] = if srtp_on && flags & 4 != 0 {
            let result = if channel == Channel::Rtcp || is_rtcp(datagram) {
                peer.protect_rtcp(datagram, &mut protected)
            } else {
                peer.protect_rtp(datagram, &mut protected)
            };
            match result {
                Ok(n) => &protected[..n],
                Err(_) => datagram,
            }
        } else {
            datagram
        };
        session.handle_datagram(now, from, channel, wire);

        let _ = session.tick(now, Some(&outbound), &mut inbound);
        while session.poll_event().is_some() {}
        while let Some(transmit) = session.poll_transmit() {
            assert!(transmit.data.len() <= 1500, "datagram over 1500 bytes");
        }
    }
    // A few more frames to drain the jitter buffer, then the media timeout.
    for _ in 0..5 {
        now += Duration::from_millis(20);
        let _ = session.tick(now, None, &mut inbound);
    }
    session.handle_timeout(now + Duration::from_secs(20));
    while session.poll_event().is_some() {}
    while session.poll_transmit().is_some() {}
    let _ = session.stats();
});

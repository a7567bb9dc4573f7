//! The tokio driver over real loopback UDP: two calls on one worker talk to
//! each other through the kernel, with SRTP, audio and DTMF.

// Helpers of this test file fail the test by panicking, as its #[test] fns do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_media::driver::{CallAudio, MediaWorker};
use switchboard_media::ports::RtpPorts;
use switchboard_media::sdp::{Direction, LocalEndpoint, MediaConfig, SdpNegotiator};
use switchboard_media::session::{FrameStatus, MediaEvent, MediaSession, SessionConfig};
use switchboard_media::srtp::SrtpPolicy;
use switchboard_media::tones::{dominant_frequency, goertzel_dbfs};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Default)]
struct Recorder {
    heard: Vec<i16>,
    events: Vec<MediaEvent>,
}

struct Side {
    tone_hz: f32,
    sample: usize,
    record: Arc<Mutex<Recorder>>,
}

impl CallAudio for Side {
    fn outbound(&mut self, frame: &mut [i16]) -> bool {
        if self.tone_hz == 0.0 {
            return false;
        }
        for s in frame.iter_mut() {
            let t = self.sample as f32 / 48_000.0;
            *s = (3276.0 * (2.0 * std::f32::consts::PI * self.tone_hz * t).sin()) as i16;
            self.sample += 1;
        }
        true
    }

    fn inbound(&mut self, frame: &[i16], _status: FrameStatus) {
        self.record.lock().unwrap().heard.extend_from_slice(frame);
    }

    fn event(&mut self, event: MediaEvent) {
        self.record.lock().unwrap().events.push(event);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn two_calls_on_one_worker_exchange_audio_and_dtmf_over_udp() {
    let config = MediaConfig {
        encryption: SrtpPolicy::Require,
        ..MediaConfig::default()
    };
    let a_ports = RtpPorts::bind_ephemeral(LOOPBACK).unwrap();
    let b_ports = RtpPorts::bind_ephemeral(LOOPBACK).unwrap();
    let mut a_sdp = SdpNegotiator::new(
        config.clone(),
        LocalEndpoint {
            address: LOOPBACK,
            rtp_port: a_ports.rtp_port(),
        },
    );
    let mut b_sdp = SdpNegotiator::new(
        config,
        LocalEndpoint {
            address: LOOPBACK,
            rtp_port: b_ports.rtp_port(),
        },
    );
    let offer = a_sdp.create_offer(Direction::SendRecv).unwrap();
    let (answer, b_media) = b_sdp.answer_offer(&offer, Direction::SendRecv).unwrap();
    let a_media = a_sdp.accept_answer(&answer).unwrap();
    let now = std::time::Instant::now();
    let a_session = MediaSession::new(SessionConfig::default(), a_media, now).unwrap();
    let b_session = MediaSession::new(SessionConfig::default(), b_media, now).unwrap();

    let a_record = Arc::new(Mutex::new(Recorder::default()));
    let b_record = Arc::new(Mutex::new(Recorder::default()));
    let worker = MediaWorker::spawn();
    let a = worker.add_call(
        a_ports,
        a_session,
        Box::new(Side {
            tone_hz: 1000.0,
            sample: 0,
            record: a_record.clone(),
        }),
    );
    let b = worker.add_call(
        b_ports,
        b_session,
        Box::new(Side {
            tone_hz: 700.0,
            sample: 0,
            record: b_record.clone(),
        }),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Audio first (DTMF replaces audio packets while a digit plays).
    let b_heard = b_record.lock().unwrap().heard.clone();
    let a_heard = a_record.lock().unwrap().heard.clone();
    a.send_dtmf("12#").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;

    let tail = |v: &[i16]| v[v.len().saturating_sub(48_000)..].to_vec();
    assert_eq!(
        dominant_frequency(&tail(&b_heard), 48_000, [700.0, 1000.0, 1500.0]),
        Some(1000.0)
    );
    assert_eq!(
        dominant_frequency(&tail(&a_heard), 48_000, [700.0, 1000.0, 1500.0]),
        Some(700.0)
    );
    let level = goertzel_dbfs(&tail(&b_heard), 48_000, 1000.0);
    assert!(level > -24.0, "1 kHz at {level} dBFS, sent at -20");
    let digits: String = b_record
        .lock()
        .unwrap()
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf(d) => Some(d.as_char()),
            _ => None,
        })
        .collect();
    assert_eq!(digits, "12#");
    let stats = b.stats().await.unwrap();
    assert!(stats.packets_received > 50, "{stats:?}");
    assert_eq!(stats.srtp_rejected, 0);
    drop(a);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(b.stats().await.is_ok(), "the other call carries on");
}

#[tokio::test(flavor = "current_thread")]
async fn ipv6_call_with_separate_rtcp_port() {
    let v6: IpAddr = "::1".parse().unwrap();
    let config = MediaConfig {
        rtcp_mux: false,
        codecs: vec![switchboard_media::sdp::CodecPreference {
            name: "PCMA".into(),
            rate: 8000,
        }],
        only_listed_codecs: true,
        ..MediaConfig::default()
    };
    let a_ports = RtpPorts::bind_ephemeral(v6).unwrap();
    let b_ports = RtpPorts::bind_ephemeral(v6).unwrap();
    let mut a_sdp = SdpNegotiator::new(
        config.clone(),
        LocalEndpoint {
            address: v6,
            rtp_port: a_ports.rtp_port(),
        },
    );
    let mut b_sdp = SdpNegotiator::new(
        config,
        LocalEndpoint {
            address: v6,
            rtp_port: b_ports.rtp_port(),
        },
    );
    let offer = a_sdp.create_offer(Direction::SendRecv).unwrap();
    assert!(offer.contains("c=IN IP6 ::1") && !offer.contains("rtcp-mux"));
    let (answer, b_media) = b_sdp.answer_offer(&offer, Direction::SendRecv).unwrap();
    let a_media = a_sdp.accept_answer(&answer).unwrap();
    assert_eq!(a_media.remote_rtcp.port(), a_media.remote_rtp.port() + 1);
    let cfg = SessionConfig {
        rtcp_interval: Duration::from_millis(400),
        ..SessionConfig::default()
    };
    let now = std::time::Instant::now();
    let a_record = Arc::new(Mutex::new(Recorder::default()));
    let b_record = Arc::new(Mutex::new(Recorder::default()));
    let worker = MediaWorker::spawn();
    let a = worker.add_call(
        a_ports,
        MediaSession::new(cfg.clone(), a_media, now).unwrap(),
        Box::new(Side {
            tone_hz: 1000.0,
            sample: 0,
            record: a_record,
        }),
    );
    let _b = worker.add_call(
        b_ports,
        MediaSession::new(cfg, b_media, now).unwrap(),
        Box::new(Side {
            tone_hz: 0.0,
            sample: 0,
            record: b_record.clone(),
        }),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let heard = b_record.lock().unwrap().heard.clone();
    assert_eq!(
        dominant_frequency(
            &heard[heard.len() - 24_000..],
            48_000,
            [700.0, 1000.0, 1500.0]
        ),
        Some(1000.0)
    );
    let stats = a.stats().await.unwrap();
    assert!(
        stats.rtcp_received >= 1,
        "RTCP over the separate IPv6 port: {stats:?}"
    );
    assert!(
        stats.round_trip.is_some(),
        "RTT from B's reports: {stats:?}"
    );
}

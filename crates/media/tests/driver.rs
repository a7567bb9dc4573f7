//! The tokio driver over real loopback UDP: two calls on one worker talk to
//! each other through the kernel, with SRTP, audio and DTMF.

// Helpers of this test file fail the test by panicking, as its #[test] fns do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_media::driver::{CallAudio, MediaWorker};
use switchboard_media::ports::RtpPorts;
use switchboard_media::sdp::{
    Direction, LocalEndpoint, MediaConfig, NegotiatedMedia, SdpNegotiator,
};
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

/// Polls `done` every 20 ms (yielding to the worker) until it holds; fails
/// after a deadline generous enough for a loaded machine.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Negotiates `config` between the pairs `a` (offerer) and `b` on `ip`:
/// the offer, and each side's negotiated media.
fn negotiate(
    config: &MediaConfig,
    ip: IpAddr,
    a: &RtpPorts,
    b: &RtpPorts,
) -> (String, NegotiatedMedia, NegotiatedMedia) {
    let endpoint = |ports: &RtpPorts| LocalEndpoint {
        address: ip,
        rtp_port: ports.rtp_port(),
    };
    let mut a_sdp = SdpNegotiator::new(config.clone(), endpoint(a));
    let mut b_sdp = SdpNegotiator::new(config.clone(), endpoint(b));
    let offer = a_sdp.create_offer(Direction::SendRecv).unwrap();
    let (answer, b_media) = b_sdp.answer_offer(&offer, Direction::SendRecv).unwrap();
    let a_media = a_sdp.accept_answer(&answer).unwrap();
    (offer, a_media, b_media)
}

#[tokio::test(flavor = "current_thread")]
async fn two_calls_on_one_worker_exchange_audio_and_dtmf_over_udp() {
    let config = MediaConfig {
        encryption: SrtpPolicy::Require,
        ..MediaConfig::default()
    };
    let a_ports = RtpPorts::bind_ephemeral(LOOPBACK).unwrap();
    let b_ports = RtpPorts::bind_ephemeral(LOOPBACK).unwrap();
    let (_, a_media, b_media) = negotiate(&config, LOOPBACK, &a_ports, &b_ports);
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
    // Audio first (DTMF replaces audio packets while a digit plays): wait
    // until each side has played out 1.2 s, however slowly the machine runs.
    let heard_len = |r: &Arc<Mutex<Recorder>>| r.lock().unwrap().heard.len();
    wait_for("1.2 s of audio on both sides", || {
        heard_len(&a_record) >= 57_600 && heard_len(&b_record) >= 57_600
    })
    .await;
    let b_heard = b_record.lock().unwrap().heard.clone();
    let a_heard = a_record.lock().unwrap().heard.clone();
    a.send_dtmf("12#").await.unwrap();
    let digits_heard = || -> String {
        b_record
            .lock()
            .unwrap()
            .events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Dtmf(d) => Some(d.as_char()),
                _ => None,
            })
            .collect()
    };
    wait_for("three digits at B", || digits_heard().len() >= 3).await;

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
    assert_eq!(digits_heard(), "12#");
    let stats = b.stats().await.unwrap();
    assert!(stats.packets_received > 50, "{stats:?}");
    assert_eq!(stats.srtp_rejected, 0);
    // Ending one call leaves the other running: B keeps sending.
    drop(a);
    let sent_then = b.stats().await.unwrap().packets_sent;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sent_now = b.stats().await.unwrap().packets_sent;
        if sent_now >= sent_then + 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B stopped after A ended: {sent_then} then {sent_now} packets sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let (offer, a_media, b_media) = negotiate(&config, v6, &a_ports, &b_ports);
    assert!(offer.contains("c=IN IP6 ::1") && !offer.contains("rtcp-mux"));
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
    wait_for("1.5 s of audio at B", || {
        b_record.lock().unwrap().heard.len() >= 72_000
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = a.stats().await.unwrap();
        if stats.rtcp_received >= 1 && stats.round_trip.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no RTCP over the separate IPv6 port with an RTT from B's reports: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let heard = b_record.lock().unwrap().heard.clone();
    assert_eq!(
        dominant_frequency(
            &heard[heard.len() - 24_000..],
            48_000,
            [700.0, 1000.0, 1500.0]
        ),
        Some(1000.0)
    );
}

/// Calls on which nothing arrives cost no receive system call per tick:
/// the worker reads a socket only when the reactor saw it become readable
/// (counted through `MediaWorker::receive_syscalls`). A packet that does
/// arrive is read, with the one `WouldBlock` that ends the read.
#[tokio::test(flavor = "current_thread")]
async fn idle_calls_cost_no_receive_syscalls_per_tick() {
    let config = MediaConfig::default();
    let worker = MediaWorker::spawn();
    let mut handles = Vec::new();
    // The far ends stay bound (and silent), so our packets to them draw no
    // ICMP errors back.
    let mut far_ends = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..20 {
        let near = RtpPorts::bind_ephemeral(LOOPBACK).unwrap();
        let far = RtpPorts::bind_ephemeral(LOOPBACK).unwrap();
        targets.push(near.rtp_local().unwrap());
        let (_, media, _) = negotiate(&config, LOOPBACK, &near, &far);
        let session =
            MediaSession::new(SessionConfig::default(), media, std::time::Instant::now()).unwrap();
        handles.push(worker.add_call(
            near,
            session,
            Box::new(Side {
                tone_hz: 1000.0,
                sample: 0,
                record: Arc::new(Mutex::new(Recorder::default())),
            }),
        ));
        far_ends.push(far);
    }
    // Twenty ticks or more for every call: each has sent its packets.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut sent = Vec::new();
        for handle in &handles {
            sent.push(handle.stats().await.unwrap().packets_sent);
        }
        if sent.iter().all(|n| *n >= 20) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the calls are not ticking: {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        worker.receive_syscalls(),
        0,
        "20 idle calls were read although nothing arrived"
    );

    // Three packets for one call: read, then the WouldBlock that ends it.
    let sender = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
    for _ in 0..3 {
        sender
            .send_to(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], targets[0])
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker.receive_syscalls() < 4 {
        assert!(
            Instant::now() < deadline,
            "the packets were never read: {} reads",
            worker.receive_syscalls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A few more ticks: still only that socket's reads.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reads = worker.receive_syscalls();
    assert!(
        (4..=6).contains(&reads),
        "{reads} reads for 3 packets on one of 20 calls"
    );
    drop(far_ends);
}

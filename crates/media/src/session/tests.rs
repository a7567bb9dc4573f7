//! Two sessions wired back to back through a simulated network, in virtual
//! time: every codec, every SRTP suite, loss and reordering, DTMF, tones,
//! latching, timeouts, RTCP and re-negotiation.

use super::*;
use crate::sdp::{CodecPreference, Direction, LocalEndpoint, MediaConfig, SdpNegotiator};
use crate::srtp::{SrtpPolicy, SrtpSuite};
use crate::tones::{dominant_frequency, goertzel_dbfs};

const A_ADDR: &str = "127.0.0.1:10000";
const B_ADDR: &str = "127.0.0.1:20000";

/// A deterministic xorshift generator, so loss patterns repeat run to run.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Edits or drops a datagram in flight (false = drop).
type Tamper = Box<dyn FnMut(&mut Vec<u8>) -> bool>;

/// One direction of the simulated network.
struct Link {
    loss: f64,
    reorder: f64,
    duplicate: f64,
    rng: Rng,
    held: Vec<(SocketAddr, Channel, Vec<u8>)>,
    /// Edits or drops a datagram (false = drop) before delivery.
    tamper: Option<Tamper>,
}

impl Link {
    fn clean() -> Link {
        Link {
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            held: vec![],
            tamper: None,
        }
    }

    fn lossy(loss: f64, reorder: f64) -> Link {
        Link {
            loss,
            reorder,
            ..Link::clean()
        }
    }

    /// Moves `from`'s transmits to `to`, applying loss, reordering and tampering.
    fn carry(
        &mut self,
        now: Instant,
        from: &mut MediaSession,
        from_addr: SocketAddr,
        to: &mut MediaSession,
    ) {
        let mut out = vec![];
        while let Some(t) = from.poll_transmit() {
            out.push((t.channel, t.data.to_vec()));
        }
        let held = std::mem::take(&mut self.held);
        for (channel, mut data) in out {
            if let Some(tamper) = &mut self.tamper {
                if !tamper(&mut data) {
                    continue;
                }
            }
            if self.rng.next_f64() < self.loss {
                continue;
            }
            if self.rng.next_f64() < self.reorder {
                self.held.push((from_addr, channel, data));
                continue;
            }
            to.handle_datagram(now, from_addr, channel, &data);
            if self.rng.next_f64() < self.duplicate {
                to.handle_datagram(now, from_addr, channel, &data);
            }
        }
        // Held packets arrive one tick late, behind newer ones.
        for (addr, channel, data) in held {
            to.handle_datagram(now, addr, channel, &data);
        }
    }
}

/// Negotiates a call between two configs and builds both sessions.
fn pair(
    offer_cfg: MediaConfig,
    answer_cfg: MediaConfig,
    session_cfg: SessionConfig,
) -> (MediaSession, MediaSession) {
    let a_addr: SocketAddr = A_ADDR.parse().unwrap();
    let b_addr: SocketAddr = B_ADDR.parse().unwrap();
    let mut a = SdpNegotiator::new(
        offer_cfg,
        LocalEndpoint {
            address: a_addr.ip(),
            rtp_port: a_addr.port(),
        },
    );
    let mut b = SdpNegotiator::new(
        answer_cfg,
        LocalEndpoint {
            address: b_addr.ip(),
            rtp_port: b_addr.port(),
        },
    );
    let offer = a.create_offer(Direction::SendRecv).unwrap();
    let (answer, b_media) = b.answer_offer(&offer, Direction::SendRecv).unwrap();
    let a_media = a.accept_answer(&answer).unwrap();
    let now = Instant::now();
    (
        MediaSession::new(session_cfg.clone(), a_media, now).unwrap(),
        MediaSession::new(session_cfg, b_media, now).unwrap(),
    )
}

fn only(codec: &str, encryption: SrtpPolicy, suite: Option<SrtpSuite>) -> MediaConfig {
    MediaConfig {
        codecs: vec![CodecPreference {
            name: codec.into(),
            rate: 0,
        }],
        only_listed_codecs: true,
        encryption,
        offered_suites: suite.map_or_else(|| MediaConfig::default().offered_suites, |s| vec![s]),
        ..MediaConfig::default()
    }
}

fn sine(frequency: f32, rate: u32, level_dbfs: f32, start: usize, out: &mut [i16]) {
    let amplitude = 32767.0 * 10f32.powf(level_dbfs / 20.0);
    for (i, o) in out.iter_mut().enumerate() {
        let t = (start + i) as f32 / rate as f32;
        *o = (amplitude * (2.0 * std::f32::consts::PI * frequency * t).sin()) as i16;
    }
}

struct Run {
    /// What B received, at the room rate.
    b_heard: Vec<i16>,
    /// What A received.
    a_heard: Vec<i16>,
    b_events: Vec<MediaEvent>,
    a_events: Vec<MediaEvent>,
    end: Instant,
}

/// Runs `frames` ticks of 20 ms: A sends a sine of `frequency` (or nothing
/// when 0), B sends silence.
fn run(
    a: &mut MediaSession,
    b: &mut MediaSession,
    frames: usize,
    frequency: f32,
    a_to_b: &mut Link,
    b_to_a: &mut Link,
    start: Instant,
) -> Run {
    let rate = a.config.room_rate;
    let len = a.room_frame_len();
    let (a_addr, b_addr) = (A_ADDR.parse().unwrap(), B_ADDR.parse().unwrap());
    let mut out = vec![0i16; len];
    let mut heard = vec![0i16; len];
    let mut run = Run {
        b_heard: vec![],
        a_heard: vec![],
        b_events: vec![],
        a_events: vec![],
        end: start,
    };
    for i in 0..frames {
        let now = start + Duration::from_millis(20 * i as u64);
        sine(frequency, rate, -20.0, i * len, &mut out);
        a.tick(now, (frequency > 0.0).then_some(&out[..]), &mut heard);
        run.a_heard.extend_from_slice(&heard);
        b.tick(now, None, &mut heard);
        run.b_heard.extend_from_slice(&heard);
        a_to_b.carry(now, a, a_addr, b);
        b_to_a.carry(now, b, b_addr, a);
        run.b_events.extend(std::iter::from_fn(|| b.poll_event()));
        run.a_events.extend(std::iter::from_fn(|| a.poll_event()));
        run.end = now;
    }
    run
}

fn assert_tone(heard: &[i16], rate: u32, frequency: f32, what: &str) {
    // Skip the first half second: jitter buffer fill and resampler delay.
    let tail = &heard[rate as usize / 2..];
    let candidates = [
        300.0, 440.0, 700.0, 1000.0, 1500.0, 2200.0, 3000.0, 5000.0, 6000.0,
    ];
    let found = dominant_frequency(tail, rate, candidates).unwrap();
    assert_eq!(found, frequency, "{what}: dominant frequency");
    let level = goertzel_dbfs(tail, rate, frequency);
    assert!(
        (level + 20.0).abs() < 3.0,
        "{what}: level {level:.1} dBFS, sent -20"
    );
}

#[test]
fn every_codec_carries_a_tone_at_every_room_rate() {
    for codec in ["PCMU", "PCMA", "G722", "opus"] {
        for room_rate in [8000, 16000, 48000] {
            let cfg = SessionConfig {
                room_rate,
                ..SessionConfig::default()
            };
            let (mut a, mut b) = pair(
                only(codec, SrtpPolicy::Disable, None),
                only(codec, SrtpPolicy::Disable, None),
                cfg,
            );
            let r = run(
                &mut a,
                &mut b,
                100,
                1000.0,
                &mut Link::clean(),
                &mut Link::clean(),
                Instant::now(),
            );
            assert_tone(
                &r.b_heard,
                room_rate,
                1000.0,
                &format!("{codec} room {room_rate}"),
            );
            assert_eq!(b.stats().packets_lost, 0);
            assert!(
                r.a_heard[room_rate as usize / 2..]
                    .iter()
                    .all(|s| s.abs() < 200),
                "{codec}: B sent silence"
            );
        }
    }
}

#[test]
fn wideband_codecs_carry_what_narrowband_cannot() {
    // 6 kHz survives G.722 (16 kHz audio) and Opus, not G.711.
    for codec in ["G722", "opus"] {
        let (mut a, mut b) = pair(
            only(codec, SrtpPolicy::Disable, None),
            only(codec, SrtpPolicy::Disable, None),
            SessionConfig::default(),
        );
        let r = run(
            &mut a,
            &mut b,
            100,
            6000.0,
            &mut Link::clean(),
            &mut Link::clean(),
            Instant::now(),
        );
        assert_tone(&r.b_heard, 48000, 6000.0, codec);
    }
    let (mut a, mut b) = pair(
        only("PCMU", SrtpPolicy::Disable, None),
        only("PCMU", SrtpPolicy::Disable, None),
        SessionConfig::default(),
    );
    let r = run(
        &mut a,
        &mut b,
        100,
        6000.0,
        &mut Link::clean(),
        &mut Link::clean(),
        Instant::now(),
    );
    assert!(
        goertzel_dbfs(&r.b_heard[24000..], 48000, 6000.0) < -50.0,
        "G.711 band-limits to 4 kHz"
    );
}

#[test]
fn every_srtp_suite_with_every_codec() {
    for suite in SrtpSuite::OFFER_ORDER {
        for codec in ["PCMU", "PCMA", "G722", "opus"] {
            let (mut a, mut b) = pair(
                only(codec, SrtpPolicy::Require, Some(suite)),
                only(codec, SrtpPolicy::Require, None),
                SessionConfig::default(),
            );
            assert_eq!(a.media().srtp.as_ref().unwrap().local.suite, suite);
            let mut a_to_b = Link::clean();
            // Prove the wire is encrypted: read the payloads as if they were
            // µ-law; the 1 kHz tone must not be in there.
            let wire = std::rc::Rc::new(std::cell::RefCell::new(Vec::<i16>::new()));
            let tap = wire.clone();
            let pt = a.media().send_payload_type;
            a_to_b.tamper = Some(Box::new(move |d: &mut Vec<u8>| {
                if d[1] & 0x7f == pt && d.len() >= 172 {
                    tap.borrow_mut().extend(
                        d[12..172]
                            .iter()
                            .map(|&c| crate::codec::g711::ulaw_to_linear(c)),
                    );
                }
                true
            }));
            let r = run(
                &mut a,
                &mut b,
                75,
                1000.0,
                &mut a_to_b,
                &mut Link::clean(),
                Instant::now(),
            );
            assert_tone(
                &r.b_heard,
                48000,
                1000.0,
                &format!("{codec} over {suite:?}"),
            );
            assert_eq!(b.stats().srtp_rejected, 0);
            if codec == "PCMU" {
                let on_wire = goertzel_dbfs(&wire.borrow(), 8000, 1000.0);
                assert!(
                    on_wire < -35.0,
                    "{suite:?}: 1 kHz visible on the wire at {on_wire} dB"
                );
            }
        }
    }
}

#[test]
fn tampered_and_replayed_packets_are_rejected_in_a_call() {
    let (mut a, mut b) = pair(
        only("PCMU", SrtpPolicy::Require, None),
        only("PCMU", SrtpPolicy::Require, None),
        SessionConfig::default(),
    );
    let now = Instant::now();
    let mut out = vec![0i16; 960];
    let mut heard = vec![0i16; 960];
    sine(1000.0, 48000, -20.0, 0, &mut out);
    a.tick(now, Some(&out), &mut heard);
    let packet = a.poll_transmit().unwrap().data.to_vec();
    let from: SocketAddr = A_ADDR.parse().unwrap();
    b.handle_datagram(now, from, Channel::Rtp, &packet);
    assert_eq!(b.stats().packets_received, 1);
    b.handle_datagram(now, from, Channel::Rtp, &packet);
    let mut tampered = packet.clone();
    tampered[30] ^= 0x40;
    b.handle_datagram(now, from, Channel::Rtp, &tampered);
    let stats = b.stats();
    assert_eq!(stats.packets_received, 1);
    assert_eq!(stats.srtp_rejected, 2);
}

#[test]
fn tone_survives_five_percent_loss_and_reordering() {
    for codec in ["PCMU", "G722", "opus"] {
        let (mut a, mut b) = pair(
            only(codec, SrtpPolicy::Disable, None),
            only(codec, SrtpPolicy::Disable, None),
            SessionConfig::default(),
        );
        let r = run(
            &mut a,
            &mut b,
            250,
            1000.0,
            &mut Link::lossy(0.05, 0.05),
            &mut Link::clean(),
            Instant::now(),
        );
        let tail = &r.b_heard[24000..];
        assert_eq!(
            dominant_frequency(tail, 48000, [300.0, 700.0, 1000.0, 1500.0, 3000.0]),
            Some(1000.0),
            "{codec}"
        );
        assert!(
            goertzel_dbfs(tail, 48000, 1000.0) > -26.0,
            "{codec}: concealment keeps the level up"
        );
        let stats = b.stats();
        assert!(
            stats.jitter_buffer.lost > 3,
            "{codec}: jitter buffer reports loss: {:?}",
            stats.jitter_buffer
        );
        assert!(
            stats.jitter_buffer.reordered > 3,
            "{codec}: reordering seen: {:?}",
            stats.jitter_buffer
        );
        assert!(
            stats.packets_lost > 3,
            "{codec}: RFC 3550 loss {}",
            stats.packets_lost
        );
        assert!(stats.concealed_frames > 3);
    }
}

#[test]
fn opus_fec_recovers_single_losses() {
    let cfg = SessionConfig::default();
    let (mut a, mut b) = pair(
        only("opus", SrtpPolicy::Disable, None),
        only("opus", SrtpPolicy::Disable, None),
        cfg,
    );
    let mut link = Link::clean();
    let mut n = 0;
    // Drop every 10th audio packet.
    link.tamper = Some(Box::new(move |d: &mut Vec<u8>| {
        if rtp::is_rtcp(d) {
            return true;
        }
        n += 1;
        n % 10 != 0
    }));
    let r = run(
        &mut a,
        &mut b,
        200,
        1000.0,
        &mut link,
        &mut Link::clean(),
        Instant::now(),
    );
    assert_tone(&r.b_heard, 48000, 1000.0, "opus with FEC");
    assert!(b.stats().jitter_buffer.lost >= 15);
}

fn collect_digits(events: &[MediaEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf(d) => Some(d.as_char()),
            _ => None,
        })
        .collect()
}

fn dtmf_run(codec: &str, tamper: Option<Tamper>) -> (String, MediaSession) {
    dtmf_run_on(
        codec,
        Link {
            tamper,
            ..Link::clean()
        },
    )
}

fn dtmf_run_on(codec: &str, mut link: Link) -> (String, MediaSession) {
    let cfg = SessionConfig {
        dtmf: DtmfSendConfig {
            duration: Duration::from_millis(100),
            gap: Duration::from_millis(60),
            ..DtmfSendConfig::default()
        },
        ..SessionConfig::default()
    };
    let (mut a, mut b) = pair(
        only(codec, SrtpPolicy::Disable, None),
        only(codec, SrtpPolicy::Disable, None),
        cfg,
    );
    a.send_dtmf("0123456789*#ABCD1w1").unwrap();
    let r = run(
        &mut a,
        &mut b,
        300,
        0.0,
        &mut link,
        &mut Link::clean(),
        Instant::now(),
    );
    (collect_digits(&r.b_events), b)
}

#[test]
fn every_digit_arrives_once() {
    for codec in ["PCMU", "opus"] {
        let (digits, b) = dtmf_run(codec, None);
        assert_eq!(digits, "0123456789*#ABCD11", "{codec}");
        assert_eq!(b.stats().dtmf_received, 18);
    }
}

fn event_pt(d: &[u8]) -> bool {
    d.len() == 16 && !rtp::is_rtcp(d)
}

#[test]
fn digits_without_marker_bits_arrive_once() {
    let (digits, _) = dtmf_run(
        "PCMU",
        Some(Box::new(|d: &mut Vec<u8>| {
            if event_pt(d) {
                d[1] &= 0x7f;
            }
            true
        })),
    );
    assert_eq!(digits, "0123456789*#ABCD11");
}

#[test]
fn digits_whose_end_packets_are_lost_arrive_once() {
    let (digits, _) = dtmf_run(
        "PCMU",
        Some(Box::new(|d: &mut Vec<u8>| {
            !(event_pt(d) && d[13] & 0x80 != 0)
        })),
    );
    assert_eq!(digits, "0123456789*#ABCD11");
}

#[test]
fn digits_missing_their_first_packet_arrive_once() {
    let mut seen_first = std::collections::HashSet::new();
    let (digits, _) = dtmf_run(
        "PCMU",
        Some(Box::new(move |d: &mut Vec<u8>| {
            // Drop each event's first packet (and its marker with it).
            if event_pt(d) {
                let ts = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
                return !seen_first.insert(ts);
            }
            true
        })),
    );
    assert_eq!(digits, "0123456789*#ABCD11");
}

#[test]
fn the_sender_reports_its_digits_sent_once_they_have_played_out() {
    let cfg = SessionConfig {
        dtmf: DtmfSendConfig {
            duration: Duration::from_millis(100),
            gap: Duration::from_millis(60),
            ..DtmfSendConfig::default()
        },
        ..SessionConfig::default()
    };
    let (mut a, mut b) = pair(
        only("PCMU", SrtpPolicy::Disable, None),
        only("PCMU", SrtpPolicy::Disable, None),
        cfg,
    );
    a.send_dtmf("12").unwrap();
    let sent = |events: &[MediaEvent]| {
        events
            .iter()
            .filter(|e| **e == MediaEvent::DtmfSent)
            .count()
    };
    let start = Instant::now();
    let (mut ab, mut ba) = (Link::clean(), Link::clean());
    // Two digits of 100 ms, their end packets and gaps: not done in 200 ms.
    let first = run(&mut a, &mut b, 10, 0.0, &mut ab, &mut ba, start);
    assert_eq!(sent(&first.a_events), 0);
    let rest = run(
        &mut a,
        &mut b,
        40,
        0.0,
        &mut ab,
        &mut ba,
        first.end + Duration::from_millis(20),
    );
    assert_eq!(sent(&rest.a_events), 1, "{:?}", rest.a_events);
    let digits: String = [first.b_events, rest.b_events]
        .concat()
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf(d) => Some(d.as_char()),
            _ => None,
        })
        .collect();
    assert_eq!(digits, "12", "reported sent after the peer got them");
}

#[test]
fn dtmf_needs_telephone_event() {
    let cfg = MediaConfig {
        telephone_event: false,
        ..only("PCMU", SrtpPolicy::Disable, None)
    };
    let (mut a, _) = pair(cfg.clone(), cfg, SessionConfig::default());
    assert!(matches!(
        a.send_dtmf("1"),
        Err(SessionError::NoTelephoneEvent)
    ));
}

#[test]
fn ringback_and_dial_tone_reach_the_peer() {
    for (plan, kind, freq) in [
        (TonePlan::Us, ToneKind::Ringback, 440.0),
        (TonePlan::Eu, ToneKind::Dial, 425.0),
    ] {
        let cfg = SessionConfig {
            tone_plan: plan,
            ..SessionConfig::default()
        };
        let (mut a, mut b) = pair(
            only("PCMA", SrtpPolicy::Disable, None),
            only("PCMA", SrtpPolicy::Disable, None),
            cfg,
        );
        a.play_tone(Some(kind));
        let r = run(
            &mut a,
            &mut b,
            75,
            0.0,
            &mut Link::clean(),
            &mut Link::clean(),
            Instant::now(),
        );
        let heard = &r.b_heard[24000..];
        assert!(
            goertzel_dbfs(heard, 48000, freq) > -24.0,
            "{plan:?} {kind:?}"
        );
        assert_eq!(
            dominant_frequency(heard, 48000, [freq, 1000.0, 2000.0]),
            Some(freq)
        );
    }
}

#[test]
fn media_timeout_fires_after_the_initial_allowance_then_after_silence() {
    let (mut a, mut b) = pair(
        only("PCMU", SrtpPolicy::Disable, None),
        only("PCMU", SrtpPolicy::Disable, None),
        SessionConfig::default(),
    );
    let start = Instant::now();
    let mut heard = vec![0i16; 960];
    // Nothing at all for 29 s: no timeout yet; at 30 s it fires.
    a.handle_timeout(start + Duration::from_secs(29));
    assert!(std::iter::from_fn(|| a.poll_event())
        .all(|e| !matches!(e, MediaEvent::MediaTimeout { .. })));
    a.handle_timeout(start + Duration::from_secs(30));
    assert!(
        std::iter::from_fn(|| a.poll_event()).any(|e| matches!(e, MediaEvent::MediaTimeout { .. }))
    );
    // Media flows: resumed. Then B stops: 15 s later, timeout again.
    let r = run(
        &mut a,
        &mut b,
        50,
        0.0,
        &mut Link::clean(),
        &mut Link::clean(),
        start + Duration::from_secs(31),
    );
    assert!(r.a_events.contains(&MediaEvent::MediaResumed));
    let last = r.end;
    a.tick(last + Duration::from_secs(14), None, &mut heard);
    assert!(!std::iter::from_fn(|| a.poll_event())
        .any(|e| matches!(e, MediaEvent::MediaTimeout { .. })));
    a.tick(last + Duration::from_millis(15_020), None, &mut heard);
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        events.iter().any(
            |e| matches!(e, MediaEvent::MediaTimeout { silent_for } if silent_for.as_secs() >= 15)
        ),
        "{events:?}"
    );
}

#[test]
fn media_timeout_is_suspended_on_hold_and_configurable() {
    let (mut a, _) = pair(
        only("PCMU", SrtpPolicy::Disable, None),
        only("PCMU", SrtpPolicy::Disable, None),
        SessionConfig::default(),
    );
    let start = Instant::now();
    let mut held = a.media().clone();
    held.remote_direction = Direction::Inactive;
    held.direction = Direction::Inactive;
    a.update(held.clone(), start).unwrap();
    a.handle_timeout(start + Duration::from_secs(600));
    assert!(
        std::iter::from_fn(|| a.poll_event())
            .all(|e| !matches!(e, MediaEvent::MediaTimeout { .. })),
        "held for 10 min"
    );
    held.direction = Direction::SendRecv;
    held.remote_direction = Direction::SendRecv;
    a.update(held, start + Duration::from_secs(600)).unwrap();
    a.set_media_timeout(Duration::from_secs(5), Duration::from_secs(5));
    a.handle_timeout(start + Duration::from_secs(604));
    assert!(std::iter::from_fn(|| a.poll_event())
        .all(|e| !matches!(e, MediaEvent::MediaTimeout { .. })));
    a.handle_timeout(start + Duration::from_secs(605));
    assert!(
        std::iter::from_fn(|| a.poll_event()).any(|e| matches!(e, MediaEvent::MediaTimeout { .. }))
    );
}

#[test]
fn hold_stops_sending() {
    let (mut a, _) = pair(
        only("PCMU", SrtpPolicy::Disable, None),
        only("PCMU", SrtpPolicy::Disable, None),
        SessionConfig::default(),
    );
    let mut media = a.media().clone();
    media.direction = Direction::RecvOnly;
    a.update(media, Instant::now()).unwrap();
    let mut heard = vec![0i16; 960];
    a.tick(Instant::now(), None, &mut heard);
    assert!(
        std::iter::from_fn(|| a.poll_transmit().map(|t| t.data.len())).all(|len| len != 172),
        "no audio while we only receive"
    );
}

#[test]
fn latching_follows_the_real_source() {
    for (mode, expect_latch) in [
        (Latching::Off, false),
        (Latching::Auto, true),
        (Latching::On, true),
    ] {
        let cfg = SessionConfig {
            latching: mode,
            ..SessionConfig::default()
        };
        let (mut a, mut b) = pair(
            only("PCMU", SrtpPolicy::Disable, None),
            only("PCMU", SrtpPolicy::Disable, None),
            cfg,
        );
        // B is behind a NAT: its packets come from another address than its SDP says.
        let nat: SocketAddr = "127.0.0.9:40000".parse().unwrap();
        let now = Instant::now();
        let mut heard = vec![0i16; 960];
        b.tick(now, None, &mut heard);
        while let Some(t) = b.poll_transmit() {
            let data = t.data.to_vec();
            a.handle_datagram(now, nat, Channel::Rtp, &data);
        }
        let latched = std::iter::from_fn(|| a.poll_event()).any(|e| {
            e == MediaEvent::Latched {
                channel: Channel::Rtp,
                destination: nat,
            }
        });
        assert_eq!(latched, expect_latch, "{mode:?}");
        assert_eq!(a.rtp_destination() == nat, expect_latch, "{mode:?}");
        // In Auto, a third party can't steal the stream afterwards.
        if mode == Latching::Auto {
            b.tick(now + Duration::from_millis(20), None, &mut heard);
            let data = b.poll_transmit().unwrap().data.to_vec();
            a.handle_datagram(now, "127.0.0.66:5000".parse().unwrap(), Channel::Rtp, &data);
            assert_eq!(a.rtp_destination(), nat);
            assert_eq!(a.stats().foreign_source, 1);
        }
    }
}

#[test]
fn rtcp_reports_loss_jitter_and_round_trip() {
    let (mut a, mut b) = pair(
        only("PCMU", SrtpPolicy::Require, None),
        only("PCMU", SrtpPolicy::Require, None),
        SessionConfig::default(),
    );
    // A -> B loses 10 %, B -> A is clean; both send audio.
    let r = run(
        &mut a,
        &mut b,
        1000,
        1000.0,
        &mut Link::lossy(0.10, 0.0),
        &mut Link::clean(),
        Instant::now(),
    );
    let _ = r;
    let (sa, sb) = (a.stats(), b.stats());
    assert!(
        sa.rtcp_sent >= 2 && sb.rtcp_sent >= 2,
        "{} {}",
        sa.rtcp_sent,
        sb.rtcp_sent
    );
    assert!(sa.rtcp_received >= 1, "A heard B's reports");
    let remote_loss = sa.remote_fraction_lost.unwrap();
    assert!(
        remote_loss > 0.0 && remote_loss < 0.3,
        "B told A it lost {remote_loss}"
    );
    assert!(sa.remote_packets_lost.unwrap() > 20);
    assert!(sb.packets_lost > 20 && sb.fraction_lost > 0.0, "{sb:?}");
    // Virtual time with instant delivery: the RTT is what the reports say it is, about zero.
    assert!(
        sa.round_trip.unwrap() < Duration::from_millis(25),
        "{:?}",
        sa.round_trip
    );
    assert!(sb.round_trip.is_some());
}

#[test]
fn reinvite_changes_codec_and_keeps_audio_flowing() {
    let both = MediaConfig {
        encryption: SrtpPolicy::Allow,
        ..MediaConfig::default()
    };
    let a_addr: SocketAddr = A_ADDR.parse().unwrap();
    let b_addr: SocketAddr = B_ADDR.parse().unwrap();
    let mut na = SdpNegotiator::new(
        both.clone(),
        LocalEndpoint {
            address: a_addr.ip(),
            rtp_port: a_addr.port(),
        },
    );
    let mut nb = SdpNegotiator::new(
        both,
        LocalEndpoint {
            address: b_addr.ip(),
            rtp_port: b_addr.port(),
        },
    );
    let (answer, b_media) = nb
        .answer_offer(
            &na.create_offer(Direction::SendRecv).unwrap(),
            Direction::SendRecv,
        )
        .unwrap();
    let a_media = na.accept_answer(&answer).unwrap();
    assert_eq!(a_media.codec, CodecKind::G722);
    let start = Instant::now();
    let mut a = MediaSession::new(SessionConfig::default(), a_media, start).unwrap();
    let mut b = MediaSession::new(SessionConfig::default(), b_media, start).unwrap();
    run(
        &mut a,
        &mut b,
        50,
        1000.0,
        &mut Link::clean(),
        &mut Link::clean(),
        start,
    );
    // B re-offers with PCMA only (a re-INVITE); A answers.
    let mut nb2 = nb.clone();
    nb2.set_config(only("PCMA", SrtpPolicy::Allow, None));
    let reoffer = nb2.create_offer(Direction::SendRecv).unwrap();
    let (reanswer, a_media) = na.answer_offer(&reoffer, Direction::SendRecv).unwrap();
    let b_media = nb2.accept_answer(&reanswer).unwrap();
    assert_eq!(a_media.codec, CodecKind::Pcma);
    let t = start + Duration::from_secs(1);
    a.update(a_media, t).unwrap();
    b.update(b_media, t).unwrap();
    let r = run(
        &mut a,
        &mut b,
        75,
        3000.0,
        &mut Link::clean(),
        &mut Link::clean(),
        t,
    );
    assert_tone(&r.b_heard, 48000, 3000.0, "after re-INVITE to PCMA");
}

#[test]
fn garbage_is_counted_never_fatal() {
    let (mut a, _) = pair(
        only("PCMU", SrtpPolicy::Require, None),
        only("PCMU", SrtpPolicy::Require, None),
        SessionConfig::default(),
    );
    let from: SocketAddr = B_ADDR.parse().unwrap();
    let now = Instant::now();
    let mut rng = Rng(42);
    for len in [0usize, 1, 3, 12, 13, 100, 1499, 1500, 3000] {
        let data: Vec<u8> = (0..len).map(|_| (rng.next_f64() * 256.0) as u8).collect();
        a.handle_datagram(now, from, Channel::Rtp, &data);
        a.handle_datagram(now, from, Channel::Rtcp, &data);
    }
    let stats = a.stats();
    assert_eq!(stats.packets_received, 0);
    assert!(stats.malformed + stats.srtp_rejected >= 9);
}

#[test]
fn remote_ssrc_change_restarts_the_stream() {
    let (mut a, mut b) = pair(
        only("PCMU", SrtpPolicy::Disable, None),
        only("PCMU", SrtpPolicy::Disable, None),
        SessionConfig::default(),
    );
    let start = Instant::now();
    run(
        &mut a,
        &mut b,
        25,
        1000.0,
        &mut Link::clean(),
        &mut Link::clean(),
        start,
    );
    // A restarts its stream (new SSRC and sequence), as a peer does after a re-INVITE or failover.
    a.ssrc ^= 0x5555;
    a.sequence = a.sequence.wrapping_add(30_000);
    let r = run(
        &mut a,
        &mut b,
        50,
        1000.0,
        &mut Link::clean(),
        &mut Link::clean(),
        start + Duration::from_millis(500),
    );
    assert!(r
        .b_events
        .iter()
        .any(|e| matches!(e, MediaEvent::RemoteSsrcChanged { .. })));
    assert_tone(&r.b_heard, 48000, 1000.0, "after SSRC change");
    assert_eq!(b.stats().packets_lost, 0);
}

#[test]
fn duplicated_and_reordered_dtmf_packets_give_each_digit_once() {
    let link = Link {
        duplicate: 0.3,
        reorder: 0.2,
        ..Link::clean()
    };
    let (digits, _) = dtmf_run_on("PCMU", link);
    assert_eq!(digits, "0123456789*#ABCD11");
}

/// Caller A (codec `first`) → B, whose inbound room frames become C's
/// outbound frames → D (codec `second`): a call bridged through a room.
#[test]
fn every_codec_pair_bridged_through_the_room() {
    let codecs = ["PCMU", "PCMA", "G722", "opus"];
    for first in codecs {
        for second in codecs {
            let (mut a, mut b) = pair(
                only(first, SrtpPolicy::Disable, None),
                only(first, SrtpPolicy::Disable, None),
                SessionConfig::default(),
            );
            let (mut c, mut d) = pair(
                only(second, SrtpPolicy::Require, None),
                only(second, SrtpPolicy::Require, None),
                SessionConfig::default(),
            );
            let (from_a, from_c): (SocketAddr, SocketAddr) =
                (A_ADDR.parse().unwrap(), A_ADDR.parse().unwrap());
            let start = Instant::now();
            let mut tone = vec![0i16; 960];
            let mut room = vec![0i16; 960];
            let mut scratch = vec![0i16; 960];
            let mut heard = vec![];
            let (mut ab, mut cd) = (Link::clean(), Link::clean());
            for i in 0..100 {
                let now = start + Duration::from_millis(20 * i as u64);
                sine(2200.0, 48_000, -20.0, i * 960, &mut tone);
                a.tick(now, Some(&tone), &mut scratch);
                ab.carry(now, &mut a, from_a, &mut b);
                b.tick(now, None, &mut room);
                c.tick(now, Some(&room), &mut scratch);
                cd.carry(now, &mut c, from_c, &mut d);
                d.tick(now, None, &mut scratch);
                heard.extend_from_slice(&scratch);
            }
            assert_tone(
                &heard,
                48_000,
                2200.0,
                &format!("{first} -> room -> {second}"),
            );
        }
    }
}

#[test]
fn peer_rekey_after_a_sequence_wrap_keeps_our_stream_valid() {
    let (mut a, mut b) = pair(
        only("PCMU", SrtpPolicy::Require, None),
        only("PCMU", SrtpPolicy::Require, None),
        SessionConfig::default(),
    );
    // Start A's sequence just before the wrap so its rollover counter moves.
    a.sequence = 65_500;
    let start = Instant::now();
    run(
        &mut a,
        &mut b,
        60,
        1000.0,
        &mut Link::clean(),
        &mut Link::clean(),
        start,
    );
    // B re-keys its side in a re-INVITE; A keeps its key.
    let new_key =
        crate::srtp::SrtpKey::generate(crate::srtp::SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let mut a_media = a.media().clone();
    let mut b_media = b.media().clone();
    a_media.srtp.as_mut().unwrap().remote = new_key.clone();
    b_media.srtp.as_mut().unwrap().local = new_key;
    let t = start + Duration::from_millis(1200);
    a.update(a_media, t).unwrap();
    b.update(b_media, t).unwrap();
    let r = run(
        &mut a,
        &mut b,
        60,
        1000.0,
        &mut Link::clean(),
        &mut Link::clean(),
        t,
    );
    assert_tone(
        &r.b_heard,
        48_000,
        1000.0,
        "A's stream past the wrap, after B re-keyed",
    );
    assert_eq!(b.stats().srtp_rejected, 0);
    assert_eq!(a.stats().srtp_rejected, 0, "A took B's new key");
}

/// With the signalling source known, a stranger's packets are never taken:
/// not before the caller's first packet (RTP bleed: it would have been
/// latched to), not RTCP on the RTP port, not in any latching mode. The
/// caller behind a NAT (packets from its signalling address) is latched.
#[test]
fn only_the_peers_addresses_are_taken_and_latched() {
    for mode in [Latching::Off, Latching::Auto, Latching::On] {
        let signalling: IpAddr = "127.0.0.9".parse().unwrap();
        let cfg = SessionConfig {
            latching: mode,
            signalling_source: Some(signalling),
            ..SessionConfig::default()
        };
        let (mut a, mut b) = pair(
            only("PCMU", SrtpPolicy::Disable, None),
            only("PCMU", SrtpPolicy::Disable, None),
            cfg,
        );
        let now = Instant::now();
        let mut heard = vec![0i16; 960];
        let stranger: SocketAddr = "192.0.2.66:5000".parse().unwrap();
        b.tick(now, None, &mut heard);
        let first = b.poll_transmit().unwrap().data.to_vec();
        a.handle_datagram(now, stranger, Channel::Rtp, &first);
        assert_eq!(a.stats().packets_received, 0, "{mode:?}: a stranger's RTP");
        assert_ne!(a.rtp_destination(), stranger, "{mode:?}");
        // A forged RTCP BYE on the RTP port.
        let bye = [0x81u8, 203, 0, 1, 0, 0, 0, 1];
        a.handle_datagram(now, stranger, Channel::Rtp, &bye);
        assert!(
            !std::iter::from_fn(|| a.poll_event()).any(|e| e == MediaEvent::RemoteBye),
            "{mode:?}: a stranger's RTCP"
        );
        assert_eq!(a.stats().foreign_source, 2, "{mode:?}");
        // The caller, from its signalling address behind a NAT.
        let nat = SocketAddr::new(signalling, 40000);
        b.tick(now + Duration::from_millis(20), None, &mut heard);
        let next = b.poll_transmit().unwrap().data.to_vec();
        a.handle_datagram(now, nat, Channel::Rtp, &next);
        assert_eq!(a.stats().packets_received, 1, "{mode:?}: the caller's RTP");
        assert_eq!(
            a.rtp_destination() == nat,
            mode != Latching::Off,
            "{mode:?}: latched to the caller"
        );
    }
}

#[test]
fn a_session_follows_its_room_to_another_rate() {
    for codec in ["PCMA", "G722", "opus"] {
        let (mut a, mut b) = pair(
            only(codec, SrtpPolicy::Disable, None),
            only(codec, SrtpPolicy::Disable, None),
            SessionConfig::default(),
        );
        assert_eq!(b.room_frame_len(), 960);
        let start = Instant::now();
        run(
            &mut a,
            &mut b,
            25,
            1000.0,
            &mut Link::clean(),
            &mut Link::clean(),
            start,
        );
        // Both rooms drop to 8 kHz (two phones, say): the tone goes on.
        a.set_room_rate(8000).unwrap();
        b.set_room_rate(8000).unwrap();
        assert_eq!(b.room_frame_len(), 160);
        let r = run(
            &mut a,
            &mut b,
            100,
            1000.0,
            &mut Link::clean(),
            &mut Link::clean(),
            start + Duration::from_millis(500),
        );
        assert_eq!(r.b_heard.len(), 100 * 160);
        assert_tone(
            &r.b_heard,
            8000,
            1000.0,
            &format!("{codec} after 48 -> 8 kHz"),
        );
        assert_eq!(b.stats().packets_lost, 0);
        if codec == "opus" {
            // Opus follows the narrow room down: narrowband, no resampling.
            assert_eq!(a.pipeline.pcm_rate, 8000);
            let defaults = OpusSettings::default();
            assert_eq!(a.config.opus.bitrate, defaults.narrowband_bitrate);
            assert_eq!(a.config.opus.complexity, defaults.narrowband_complexity);
            // Back in a wide room: the configured settings again.
            a.set_room_rate(48_000).unwrap();
            assert_eq!(a.pipeline.pcm_rate, 16_000);
            assert_eq!(a.config.opus, OpusSettings::default());
        } else {
            assert_eq!(
                a.pipeline.pcm_rate,
                a.pipeline.codec.pcm_rate(&a.config.opus)
            );
        }
    }
}

/// A caller whose first packets after the answer are a digit (no audio
/// before it), as a phone sends when the user presses a key at once.
#[test]
fn a_digit_that_comes_before_any_audio_arrives() {
    let (_, mut b) = pair(
        only("PCMU", SrtpPolicy::Disable, None),
        only("PCMU", SrtpPolicy::Disable, None),
        SessionConfig::default(),
    );
    let from: SocketAddr = A_ADDR.parse().unwrap();
    let start = Instant::now();
    let mut heard = vec![0i16; b.room_frame_len()];
    let mut events = Vec::new();
    let pt = 101u8;
    for i in 0..12u16 {
        let now = start + Duration::from_millis(20 * u64::from(i));
        if i < 3 {
            let mut packet = vec![0x80, if i == 0 { 0x80 | pt } else { pt }];
            packet.extend_from_slice(&(100 + i).to_be_bytes());
            packet.extend_from_slice(&16_000u32.to_be_bytes());
            packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            let end = if i == 2 { 0x80 } else { 0 };
            packet.extend_from_slice(&[1, end | 10]);
            packet.extend_from_slice(&(160 * (i + 1)).to_be_bytes());
            b.handle_datagram(now, from, Channel::Rtp, &packet);
        }
        b.tick(now, None, &mut heard);
        events.extend(std::iter::from_fn(|| b.poll_event()));
    }
    assert_eq!(collect_digits(&events), "1");
}

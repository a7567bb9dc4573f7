//! Per-frame cost of the media hot paths (one 20 ms frame unless noted).
//! Results and their meaning: bench/media.md.
//!
//! Run: `cargo bench -p switchboard-media --bench media`

// A bench that cannot set up should stop loudly, like a test.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use std::hint::black_box;
use std::time::{Duration, Instant};
use switchboard_media::codec::g711;
use switchboard_media::codec::g722::{G722Decoder, G722Encoder};
use switchboard_media::codec::{AudioDecoder, AudioEncoder, CodecKind, OpusSettings};
use switchboard_media::jitter::{JitterBuffer, JitterConfig};
use switchboard_media::mix::Mixer;
use switchboard_media::resample::FrameResampler;
use switchboard_media::rtp::{parse_rtp, write_rtp_header, RtpView};
use switchboard_media::sdp::{
    CodecPreference, Direction, LocalEndpoint, MediaConfig, SdpNegotiator,
};
use switchboard_media::session::{Channel, MediaSession, SessionConfig};
use switchboard_media::srtp::{SrtpKey, SrtpPolicy, SrtpSession, SrtpSuite};

fn speechlike(rate: u32) -> Vec<i16> {
    // A sum of harmonics with a slow envelope: busier than a pure tone for the codecs.
    let n = (rate / 50) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let env = 0.6 + 0.4 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
            let v: f32 = [180.0f32, 360.0, 540.0, 1250.0, 2600.0]
                .iter()
                .enumerate()
                .map(|(k, f)| (2.0 * std::f32::consts::PI * f * t).sin() / (k + 1) as f32)
                .sum();
            (v * env * 6000.0) as i16
        })
        .collect()
}

fn codecs(c: &mut Criterion) {
    let pcm8 = speechlike(8000);
    let pcm16 = speechlike(16000);
    let mut out = [0u8; 1500];
    let mut pcm_out = vec![0i16; 5760];
    let mut g = c.benchmark_group("g711");
    g.bench_function("ulaw_encode", |b| {
        b.iter(|| g711::encode_ulaw(black_box(&pcm8), &mut out))
    });
    let ulaw: Vec<u8> = pcm8.iter().map(|s| g711::linear_to_ulaw(*s)).collect();
    g.bench_function("ulaw_decode", |b| {
        b.iter(|| g711::decode_ulaw(black_box(&ulaw), &mut pcm_out))
    });
    g.bench_function("alaw_encode", |b| {
        b.iter(|| g711::encode_alaw(black_box(&pcm8), &mut out))
    });
    g.finish();

    let mut g = c.benchmark_group("g722");
    let mut enc = G722Encoder::new();
    g.bench_function("encode", |b| {
        b.iter(|| enc.encode(black_box(&pcm16), &mut out))
    });
    let mut enc = G722Encoder::new();
    let n = enc.encode(&pcm16, &mut out);
    let encoded = out[..n].to_vec();
    let mut dec = G722Decoder::new();
    g.bench_function("decode", |b| {
        b.iter(|| dec.decode(black_box(&encoded), &mut pcm_out))
    });
    g.finish();

    let mut g = c.benchmark_group("opus_encode");
    for (complexity, rate) in [
        (10u8, 48_000u32),
        (5, 48_000),
        (0, 48_000),
        (10, 8000),
        (5, 8000),
        (0, 8000),
    ] {
        let settings = OpusSettings {
            complexity,
            pcm_rate: rate,
            ..OpusSettings::default()
        };
        let mut enc = AudioEncoder::new(CodecKind::Opus, &settings).unwrap();
        let pcm = speechlike(rate);
        g.bench_with_input(
            BenchmarkId::new(format!("cx{complexity}"), rate),
            &pcm,
            |b, pcm| b.iter(|| enc.encode(black_box(pcm), &mut out).unwrap()),
        );
        // Noise exercises the encoder differently from harmonics; both are shown.
        let mut seed = 0x1234_5678u32;
        let noise: Vec<i16> = (0..rate / 50)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                (seed as i16) / 8
            })
            .collect();
        let mut enc = AudioEncoder::new(CodecKind::Opus, &settings).unwrap();
        g.bench_with_input(
            BenchmarkId::new(format!("noise_cx{complexity}"), rate),
            &noise,
            |b, pcm| b.iter(|| enc.encode(black_box(pcm), &mut out).unwrap()),
        );
    }
    g.finish();

    let mut g = c.benchmark_group("opus_decode");
    for rate in [48_000u32, 8000] {
        let settings = OpusSettings {
            pcm_rate: 48_000,
            ..OpusSettings::default()
        };
        let mut enc = AudioEncoder::new(CodecKind::Opus, &settings).unwrap();
        let n = enc.encode(&speechlike(48_000), &mut out).unwrap();
        let packet = out[..n].to_vec();
        let mut dec = AudioDecoder::new(
            CodecKind::Opus,
            &OpusSettings {
                pcm_rate: rate,
                ..OpusSettings::default()
            },
        )
        .unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(rate), &packet, |b, packet| {
            b.iter(|| dec.decode(black_box(packet), &mut pcm_out).unwrap())
        });
    }
    g.finish();
}

fn resampling(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample");
    for (from, to) in [
        (8000u32, 48_000u32),
        (48_000, 8000),
        (16_000, 48_000),
        (48_000, 16_000),
    ] {
        let mut r = FrameResampler::new(from, to).unwrap();
        let input = speechlike(from);
        let mut output = vec![0i16; (to / 50) as usize];
        g.bench_function(format!("{from}_to_{to}"), |b| {
            b.iter(|| r.process(black_box(&input), &mut output))
        });
        // What each new call pays for its resamplers (filter design and
        // FFT planning), once per direction.
        g.bench_function(format!("new_{from}_to_{to}"), |b| {
            b.iter(|| FrameResampler::new(black_box(from), black_box(to)).unwrap())
        });
    }
    g.finish();
}

/// Decode + resample + encode of one frame through the room (48 kHz PCM):
/// the transcoding cost of a call whose legs use `from` and `to`.
fn codec_pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("transcode_pair");
    let opus = OpusSettings::default();
    let kinds = [
        CodecKind::Pcmu,
        CodecKind::Pcma,
        CodecKind::G722,
        CodecKind::Opus,
    ];
    for from in kinds {
        for to in kinds {
            let mut source_enc = AudioEncoder::new(from, &opus).unwrap();
            let mut out = [0u8; 1500];
            let n = source_enc
                .encode(&speechlike(from.pcm_rate(&opus)), &mut out)
                .unwrap();
            let packet = out[..n].to_vec();
            let mut dec = AudioDecoder::new(from, &opus).unwrap();
            let mut to_room = FrameResampler::new(from.pcm_rate(&opus), 48_000).unwrap();
            let mut from_room = FrameResampler::new(48_000, to.pcm_rate(&opus)).unwrap();
            let mut enc = AudioEncoder::new(to, &opus).unwrap();
            let mut codec_pcm = vec![0i16; 5760];
            let mut room = vec![0i16; 960];
            let mut target_pcm = vec![0i16; (to.pcm_rate(&opus) / 50) as usize];
            let name = format!("{}_to_{}", from.sdp_name(), to.sdp_name());
            g.bench_function(name, |b| {
                b.iter(|| {
                    let n = dec.decode(black_box(&packet), &mut codec_pcm).unwrap();
                    to_room.process(&codec_pcm[..n], &mut room);
                    from_room.process(&room, &mut target_pcm);
                    enc.encode(&target_pcm, &mut out).unwrap()
                })
            });
        }
    }
    g.finish();

    // G.711 -> Opus -> G.711 through the room, over Opus settings: the
    // capacity knob (anchors §1.4). Both directions in one iteration.
    let mut g = c.benchmark_group("pcmu_opus_round_trip");
    for (complexity, rate, bitrate) in [
        (10u8, 48_000u32, 24_000),
        (5, 48_000, 24_000),
        (5, 48_000, 32_000),
        (3, 48_000, 24_000),
        (0, 48_000, 24_000),
        (5, 16_000, 24_000),
        (5, 8000, 16_000),
        (0, 8000, 16_000),
    ] {
        let opus = OpusSettings {
            complexity,
            pcm_rate: rate,
            bitrate,
            ..OpusSettings::default()
        };
        let mut out = [0u8; 1500];
        let n = g711::encode_ulaw(&speechlike(8000), &mut out);
        let ulaw = out[..n].to_vec();
        let mut ulaw_dec = AudioDecoder::new(CodecKind::Pcmu, &opus).unwrap();
        let mut up = FrameResampler::new(8000, 48_000).unwrap();
        let mut to_opus = FrameResampler::new(48_000, rate).unwrap();
        let mut opus_enc = AudioEncoder::new(CodecKind::Opus, &opus).unwrap();
        let mut opus_dec = AudioDecoder::new(CodecKind::Opus, &opus).unwrap();
        let mut from_opus = FrameResampler::new(rate, 48_000).unwrap();
        let mut down = FrameResampler::new(48_000, 8000).unwrap();
        let mut pcm8 = vec![0i16; 160];
        let mut room = vec![0i16; 960];
        let mut opus_pcm = vec![0i16; 5760];
        let frame = (rate / 50) as usize;
        g.bench_function(
            format!("cx{complexity}_{rate}Hz_{}kbps", bitrate / 1000),
            |b| {
                b.iter(|| {
                    // Caller -> room -> Opus participant.
                    ulaw_dec.decode(black_box(&ulaw), &mut pcm8).unwrap();
                    up.process(&pcm8, &mut room);
                    to_opus.process(&room, &mut opus_pcm[..frame]);
                    let n = opus_enc.encode(&opus_pcm[..frame], &mut out).unwrap();
                    // Opus participant -> room -> caller.
                    let m = opus_dec.decode(&out[..n], &mut opus_pcm).unwrap();
                    from_opus.process(&opus_pcm[..m], &mut room);
                    down.process(&room, &mut pcm8);
                    g711::encode_ulaw(&pcm8, &mut out)
                })
            },
        );
    }
    // The same call in an 8 kHz room (a phone and an Opus leg that runs at
    // the room's rate): no resampling at all, Opus narrowband both ways.
    for complexity in [5u8, 0] {
        let opus = OpusSettings {
            complexity,
            pcm_rate: 8000,
            bitrate: 16_000,
            ..OpusSettings::default()
        };
        let mut out = [0u8; 1500];
        let n = g711::encode_ulaw(&speechlike(8000), &mut out);
        let ulaw = out[..n].to_vec();
        let mut ulaw_dec = AudioDecoder::new(CodecKind::Pcmu, &opus).unwrap();
        let mut opus_enc = AudioEncoder::new(CodecKind::Opus, &opus).unwrap();
        let mut opus_dec = AudioDecoder::new(CodecKind::Opus, &opus).unwrap();
        let mut pcm8 = vec![0i16; 160];
        let mut opus_pcm = vec![0i16; 5760];
        g.bench_function(format!("room8k_cx{complexity}_8000Hz_16kbps"), |b| {
            b.iter(|| {
                ulaw_dec.decode(black_box(&ulaw), &mut pcm8).unwrap();
                let n = opus_enc.encode(&pcm8, &mut out).unwrap();
                let m = opus_dec.decode(&out[..n], &mut opus_pcm).unwrap();
                g711::encode_ulaw(&opus_pcm[..m.min(160)], &mut out)
            })
        });
    }
    g.finish();
}

fn jitter_buffer(c: &mut Criterion) {
    let mut g = c.benchmark_group("jitter");
    let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
    let payload = [0x55u8; 160];
    let start = Instant::now();
    let mut seq = 0u16;
    // Prime to the playout depth.
    for _ in 0..3 {
        jb.push(
            start,
            &RtpView {
                marker: false,
                payload_type: 0,
                sequence: seq,
                timestamp: u32::from(seq) * 160,
                ssrc: 1,
                payload: &payload,
            },
        );
        seq = seq.wrapping_add(1);
    }
    g.bench_function("push_pop", |b| {
        b.iter(|| {
            let now = start + Duration::from_millis(u64::from(seq) * 20);
            jb.push(
                now,
                &RtpView {
                    marker: false,
                    payload_type: 0,
                    sequence: seq,
                    timestamp: u32::from(seq).wrapping_mul(160),
                    ssrc: 1,
                    payload: black_box(&payload),
                },
            );
            seq = seq.wrapping_add(1);
            black_box(matches!(
                jb.pop(),
                switchboard_media::jitter::Playout::Packet { .. }
            ))
        })
    });
    g.finish();
}

fn srtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp");
    for suite in [SrtpSuite::AesCm128HmacSha1_80, SrtpSuite::AeadAes128Gcm] {
        let key = SrtpKey::generate(suite).unwrap();
        let mut tx = SrtpSession::new(&key, &key).unwrap();
        let mut rx = SrtpSession::new(&key, &key).unwrap();
        let mut plain = vec![0u8; 172];
        let mut wire = [0u8; 1500];
        let mut back = [0u8; 1500];
        let mut seq = 0u16;
        g.bench_function(format!("protect_{}", suite.name()), |b| {
            b.iter(|| {
                write_rtp_header(&mut plain, false, 0, seq, u32::from(seq) * 160, 7);
                seq = seq.wrapping_add(1);
                tx.protect_rtp(black_box(&plain), &mut wire).unwrap()
            })
        });
        // Unprotect needs fresh sequence numbers (replay protection) and a
        // sender whose rollover counter starts with the receiver's: a new
        // pair; the unprotect cost is this minus protect.
        let mut tx = SrtpSession::new(&key, &key).unwrap();
        let mut seq = 0u16;
        g.bench_function(format!("protect_and_unprotect_{}", suite.name()), |b| {
            b.iter(|| {
                write_rtp_header(&mut plain, false, 0, seq, u32::from(seq) * 160, 7);
                seq = seq.wrapping_add(1);
                let n = tx.protect_rtp(&plain, &mut wire).unwrap();
                rx.unprotect_rtp(black_box(&wire[..n]), &mut back).unwrap()
            })
        });
    }
    g.finish();
}

fn mixing(c: &mut Criterion) {
    let mut g = c.benchmark_group("mix_minus_48k");
    for n in [2usize, 3, 10] {
        let frames: Vec<Vec<i16>> = (0..n).map(|_| speechlike(48_000)).collect();
        let inputs: Vec<Option<&[i16]>> = frames.iter().map(|f| Some(&f[..])).collect();
        let mut outs: Vec<Vec<i16>> = vec![vec![0; 960]; n];
        let mut mixer = Mixer::new(960);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let mut refs: Vec<&mut [i16]> = outs.iter_mut().map(|o| &mut o[..]).collect();
                mixer.mix_minus(black_box(&inputs), &mut refs);
            })
        });
    }
    g.finish();
}

fn session_pair(
    codec: &str,
    encryption: SrtpPolicy,
    cfg: SessionConfig,
) -> (MediaSession, MediaSession) {
    let config = MediaConfig {
        codecs: vec![CodecPreference {
            name: codec.into(),
            rate: 0,
        }],
        only_listed_codecs: true,
        encryption,
        ..MediaConfig::default()
    };
    let local = |port| LocalEndpoint {
        address: "127.0.0.1".parse().unwrap(),
        rtp_port: port,
    };
    let mut a = SdpNegotiator::new(config.clone(), local(10_000));
    let mut b = SdpNegotiator::new(config, local(20_000));
    let (answer, b_media) = b
        .answer_offer(
            &a.create_offer(Direction::SendRecv).unwrap(),
            Direction::SendRecv,
        )
        .unwrap();
    let a_media = a.accept_answer(&answer).unwrap();
    let now = Instant::now();
    (
        MediaSession::new(cfg.clone(), a_media, now).unwrap(),
        MediaSession::new(cfg, b_media, now).unwrap(),
    )
}

/// One call's full 20 ms: receive a packet (SRTP, parse, jitter buffer),
/// tick (decode + resample to 48 kHz, resample + encode, RTP, SRTP).
fn frame_tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("call_frame_tick");
    let cases: [(&str, SrtpPolicy, u32); 6] = [
        ("PCMU", SrtpPolicy::Disable, 48_000),
        ("PCMU", SrtpPolicy::Require, 48_000),
        ("PCMU", SrtpPolicy::Disable, 8000),
        ("G722", SrtpPolicy::Require, 48_000),
        ("opus", SrtpPolicy::Require, 48_000),
        ("opus", SrtpPolicy::Disable, 48_000),
    ];
    for (codec, encryption, room_rate) in cases {
        let cfg = SessionConfig {
            room_rate,
            ..SessionConfig::default()
        };
        let (mut a, mut b) = session_pair(codec, encryption, cfg);
        let from = "127.0.0.1:10000".parse().unwrap();
        let room = speechlike(room_rate);
        let mut heard = vec![0i16; (room_rate / 50) as usize];
        let mut heard_a = heard.clone();
        let start = Instant::now();
        let mut i = 0u64;
        let label = format!(
            "{codec}_{}_{room_rate}",
            if encryption == SrtpPolicy::Disable {
                "rtp"
            } else {
                "srtp"
            }
        );
        g.bench_function(label, |bench| {
            bench.iter_batched(
                || {
                    // The peer's packet for this frame (not measured).
                    let now = start + Duration::from_millis(20 * i);
                    i += 1;
                    a.tick(now, Some(&room), &mut heard_a);
                    let mut packet = Vec::new();
                    while let Some(t) = a.poll_transmit() {
                        if t.channel == Channel::Rtp && packet.is_empty() {
                            packet.extend_from_slice(t.data);
                        }
                    }
                    (now, packet)
                },
                |(now, packet)| {
                    // What one call costs the worker per frame.
                    b.handle_datagram(now, from, Channel::Rtp, &packet);
                    let status = b.tick(now, Some(black_box(&room)), &mut heard);
                    while b.poll_transmit().is_some() {}
                    status
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// Receive side alone for G.711: SRTP off, parse + jitter buffer push.
fn relay_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("packet");
    let payload = [0x55u8; 160];
    let mut pkt = vec![0u8; 172];
    let mut out = vec![0u8; 172];
    let mut seq = 0u16;
    g.bench_function("g711_relay_rewrite", |b| {
        b.iter(|| {
            // What a same-codec relay does per packet: parse, rewrite header, copy.
            write_rtp_header(&mut pkt, false, 0, seq, u32::from(seq) * 160, 9);
            pkt[12..].copy_from_slice(&payload);
            let view = parse_rtp(black_box(&pkt)).unwrap();
            write_rtp_header(
                &mut out,
                view.marker,
                view.payload_type,
                view.sequence.wrapping_add(1000),
                view.timestamp.wrapping_add(5),
                0x1234,
            );
            out[12..].copy_from_slice(view.payload);
            seq = seq.wrapping_add(1);
            black_box(&out);
        })
    });
    g.finish();
}

/// One call's port pair: allocated, then released into quarantine, with
/// `draining` pairs in quarantine in steady state (the clock advances so
/// that as many leave it as enter). Its cost must not grow with `draining`.
fn port_quarantine(c: &mut Criterion) {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;
    use switchboard_media::ports::{PortAllocator, PortConfig};
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut g = c.benchmark_group("port_quarantine");
    for draining in [10u32, 1000] {
        let config = PortConfig {
            first: 30_000,
            last: 39_999,
            drain_idle: Duration::from_secs(30),
            drain_max: Duration::from_secs(600),
            drain_min: Duration::from_secs(3),
        };
        let allocator = PortAllocator::new(config).unwrap();
        let step = config.drain_idle / draining;
        let mut now = Instant::now();
        for _ in 0..draining {
            now += step;
            allocator
                .allocate_at(loopback, now)
                .unwrap()
                .release_at(now);
        }
        g.bench_function(BenchmarkId::new("allocate_and_release", draining), |b| {
            b.iter(|| {
                now += step;
                let ports = allocator.allocate_at(loopback, now).unwrap();
                ports.release_at(now);
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_millis(1200)).sample_size(30);
    targets = codecs, resampling, codec_pairs, jitter_buffer, srtp, mixing, frame_tick, relay_packet, port_quarantine
}
criterion_main!(benches);

//! Our G.722 codec against an independent implementation: spandsp
//! (Debian's libspandsp2, the library behind baresip's g722 module), run
//! through tests/support/spandsp_g722.py. Encoder and decoder must agree
//! bit for bit, on a signal that sweeps the band, hits full scale, and is
//! silent, and on arbitrary code words, so an error in one of our tables
//! cannot hide behind the same error in our other half. (The encoder test
//! found our high band starting at scale 32 instead of the standard's 8.)

// Helpers of this test file fail the test by panicking, as its #[test] fns do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use switchboard_media::codec::g722::{G722Decoder, G722Encoder};

fn spandsp(mode: &str, input: &[u8]) -> Vec<u8> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/spandsp_g722.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (tests/deps/media.apt)");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "spandsp_g722.py {mode}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A deterministic pseudo-random sequence (xorshift), so a failure repeats.
fn noise(seed: &mut u32) -> i32 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    (*seed >> 16) as i32 - 32768
}

/// Four seconds at 16 kHz: a 50 Hz to 7.9 kHz sweep, noise, a full-scale
/// square wave that clips, silence, and a quiet tone.
fn test_signal() -> Vec<i16> {
    let rate = 16_000.0;
    let mut seed = 0x1234_5678;
    let mut pcm = Vec::new();
    let mut phase = 0.0f64;
    for i in 0..16_000 {
        let t = f64::from(i) / rate;
        let hz = 50.0 + (7_900.0 - 50.0) * t;
        phase += 2.0 * std::f64::consts::PI * hz / rate;
        pcm.push((12_000.0 * phase.sin()) as i16);
    }
    for _ in 0..16_000 {
        pcm.push((noise(&mut seed) / 3) as i16);
    }
    for i in 0..16_000 {
        pcm.push(if (i / 20) % 2 == 0 {
            i16::MAX
        } else {
            i16::MIN
        });
    }
    pcm.extend(std::iter::repeat_n(0, 8_000));
    for i in 0..8_000 {
        let t = f64::from(i) / rate;
        pcm.push((40.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16);
    }
    pcm
}

fn first_difference<T: PartialEq + std::fmt::Debug>(ours: &[T], theirs: &[T]) -> String {
    match ours.iter().zip(theirs).position(|(a, b)| a != b) {
        Some(i) => format!(
            "first difference at {i}: ours {:?}, spandsp {:?}",
            ours[i], theirs[i]
        ),
        None => format!(
            "lengths differ: ours {}, spandsp {}",
            ours.len(),
            theirs.len()
        ),
    }
}

#[test]
fn the_encoder_matches_spandsp_bit_for_bit() {
    let pcm = test_signal();
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let theirs = spandsp("encode", &bytes);
    // Encoded in 20 ms frames, as calls are: the state carries across.
    let mut encoder = G722Encoder::new();
    let mut ours = Vec::new();
    for frame in pcm.chunks(320) {
        let mut out = [0u8; 160];
        let n = encoder.encode(frame, &mut out);
        ours.extend_from_slice(&out[..n]);
    }
    assert_eq!(ours.len(), pcm.len() / 2);
    assert!(ours == theirs, "{}", first_difference(&ours, &theirs));
}

#[test]
fn the_decoder_matches_spandsp_bit_for_bit() {
    // What a real encoder sends, then every code word in a random order.
    let pcm = test_signal();
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut codes = spandsp("encode", &bytes);
    let mut seed = 0x9e37_79b9;
    codes.extend((0..32_000).map(|_| (noise(&mut seed) & 0xff) as u8));
    let theirs: Vec<i16> = spandsp("decode", &codes)
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut decoder = G722Decoder::new();
    let mut ours = Vec::new();
    for frame in codes.chunks(160) {
        let mut out = [0i16; 320];
        let n = decoder.decode(frame, &mut out);
        ours.extend_from_slice(&out[..n]);
    }
    assert_eq!(ours.len(), codes.len() * 2);
    assert_eq!(ours.len(), theirs.len());
    // Where the receive QMF's output leaves the 16-bit range, spandsp 0.0.6
    // casts it (wrapping round to the other sign, a loud click) and we
    // saturate, as the ITU-T reference limits it. Everywhere else: equal.
    let mut saturated = 0;
    for (i, (&a, &b)) in ours.iter().zip(&theirs).enumerate() {
        if a == b {
            continue;
        }
        let wrapped_from_below = a == i16::MIN && b > 0;
        let wrapped_from_above = a == i16::MAX && b < 0;
        assert!(
            wrapped_from_below || wrapped_from_above,
            "sample {i}: ours {a}, spandsp {b}, and not a saturation of an overflow"
        );
        // Only the full-scale square wave (samples 32,000 to 48,000, and
        // 10 ms after it while the filters and the adaptation settle) and
        // the random code words (after the test signal) can overflow.
        assert!(
            (32_000..48_160).contains(&i) || i >= pcm.len(),
            "sample {i} overflowed where the signal has headroom: ours {a}, spandsp {b}"
        );
        saturated += 1;
    }
    assert!(saturated > 0, "the square wave never reached the limits");
}

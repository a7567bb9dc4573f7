//! SRTP interop with libsrtp (the reference implementation), through
//! pylibsrtp in `tests/support/libsrtp_peer.py`: packets switchboard protects
//! are accepted by libsrtp and byte-identical to its own, libsrtp's are
//! accepted by switchboard, and tampered or replayed packets are refused on
//! both sides. Needs `python3` with `pylibsrtp` (tests/deps/media.pip); fails
//! without them.

// Helpers of this test file fail the test by panicking, as its #[test] fns do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use switchboard_media::rtcp::{build_report, ReportInput};
use switchboard_media::rtp::write_rtp_header;
use switchboard_media::srtp::{SrtpKey, SrtpSession, SrtpSuite};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0u8; 12 + 160];
    write_rtp_header(
        &mut p,
        seq == 0,
        0,
        seq,
        u32::from(seq).wrapping_mul(160),
        ssrc,
    );
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (i as u16 ^ seq) as u8;
    }
    p
}

fn libsrtp(request: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/libsrtp_peer.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (tests/deps/media.apt)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "libsrtp peer failed (is pylibsrtp installed? tests/deps/media.pip): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn ok(v: &Value) -> Option<Vec<u8>> {
    v.get("ok").and_then(Value::as_str).map(unhex)
}

#[test]
fn switchboard_and_libsrtp_interoperate_and_both_refuse_tamper_and_replay() {
    let profiles = [
        (SrtpSuite::AesCm128HmacSha1_80, "AES128_CM_SHA1_80"),
        (SrtpSuite::AesCm128HmacSha1_32, "AES128_CM_SHA1_32"),
        (SrtpSuite::AeadAes128Gcm, "AEAD_AES_128_GCM"),
        (SrtpSuite::AeadAes256Gcm, "AEAD_AES_256_GCM"),
    ];
    for (suite, profile) in profiles {
        let ours = SrtpKey::generate(suite).unwrap();
        let theirs = SrtpKey::generate(suite).unwrap();
        let mut session = SrtpSession::new(&ours, &theirs).unwrap();
        let mut buf = [0u8; 1500];

        // 21 packets across the sequence wrap (exercises the rollover counter).
        let plain: Vec<Vec<u8>> = (0..21u16)
            .map(|i| rtp(65_530u16.wrapping_add(i), 0x1111))
            .collect();
        let protected: Vec<Vec<u8>> = plain
            .iter()
            .map(|p| {
                let n = session.protect_rtp(p, &mut buf).unwrap();
                buf[..n].to_vec()
            })
            .collect();
        // To libsrtp: 0..20, then 20 tampered, 20 genuine, and 5 replayed.
        let mut tampered = protected[20].clone();
        tampered[20] ^= 0x01;
        let mut to_libsrtp: Vec<String> = protected[..20].iter().map(|p| hex(p)).collect();
        to_libsrtp.extend([hex(&tampered), hex(&protected[20]), hex(&protected[5])]);

        let report = build_report(
            &ReportInput {
                ssrc: 0x1111,
                sender: Some((1 << 40, 160, 21, 3360)),
                reception: None,
            },
            "sb",
        )
        .unwrap();
        let n = session.protect_rtcp(&report, &mut buf).unwrap();
        let protected_rtcp = buf[..n].to_vec();
        let peer_plain: Vec<Vec<u8>> = (0..21u16)
            .map(|i| rtp(65_525u16.wrapping_add(i), 0x2222))
            .collect();
        let peer_report = build_report(
            &ReportInput {
                ssrc: 0x2222,
                sender: None,
                reception: None,
            },
            "libsrtp",
        )
        .unwrap();

        let answer = libsrtp(json!({
            "profile": profile,
            "switchboard_key": hex(&ours.key_and_salt),
            "peer_key": hex(&theirs.key_and_salt),
            "unprotect_rtp": to_libsrtp,
            "unprotect_rtcp": [hex(&protected_rtcp)],
            "protect_rtp": peer_plain.iter().map(|p| hex(p)).collect::<Vec<_>>(),
            "protect_rtcp": [hex(&peer_report)],
            "reprotect_rtp": plain.iter().map(|p| hex(p)).collect::<Vec<_>>(),
        }));

        // libsrtp accepts ours and recovers the plaintext.
        let unprotected = answer["unprotect_rtp"].as_array().unwrap();
        for i in 0..20 {
            assert_eq!(
                ok(&unprotected[i]).as_deref(),
                Some(&plain[i][..]),
                "{profile}: libsrtp unprotects packet {i}"
            );
        }
        assert!(
            ok(&unprotected[20]).is_none(),
            "{profile}: libsrtp refuses a tampered packet: {}",
            unprotected[20]
        );
        assert_eq!(
            ok(&unprotected[21]).as_deref(),
            Some(&plain[20][..]),
            "{profile}: the genuine one after it passes"
        );
        assert!(
            ok(&unprotected[22]).is_none(),
            "{profile}: libsrtp refuses a replay: {}",
            unprotected[22]
        );
        assert_eq!(
            ok(&answer["unprotect_rtcp"][0]).as_deref(),
            Some(&report[..]),
            "{profile}: SRTCP to libsrtp"
        );

        // Same key, same plaintext: byte-identical output.
        for (i, reprotected) in answer["reprotect_rtp"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            assert_eq!(
                ok(reprotected).as_deref(),
                Some(&protected[i][..]),
                "{profile}: byte-identical to libsrtp, packet {i}"
            );
        }

        // Switchboard accepts libsrtp's, refuses tampered and replayed ones.
        let from_libsrtp: Vec<Vec<u8>> = answer["protect_rtp"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| ok(v).unwrap())
            .collect();
        for (i, packet) in from_libsrtp[..20].iter().enumerate() {
            let n = session
                .unprotect_rtp(packet, &mut buf)
                .unwrap_or_else(|e| panic!("{profile}: packet {i}: {e}"));
            assert_eq!(
                &buf[..n],
                &peer_plain[i][..],
                "{profile}: switchboard unprotects packet {i}"
            );
        }
        let mut tampered = from_libsrtp[20].clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x80;
        assert!(
            session.unprotect_rtp(&tampered, &mut buf).is_err(),
            "{profile}: tampered tag refused"
        );
        let mut tampered = from_libsrtp[20].clone();
        tampered[14] ^= 0x01;
        assert!(
            session.unprotect_rtp(&tampered, &mut buf).is_err(),
            "{profile}: tampered payload refused"
        );
        assert!(
            session.unprotect_rtp(&from_libsrtp[20], &mut buf).is_ok(),
            "{profile}: genuine accepted"
        );
        assert!(
            session.unprotect_rtp(&from_libsrtp[3], &mut buf).is_err(),
            "{profile}: replay refused"
        );
        assert!(
            session.unprotect_rtp(&from_libsrtp[20], &mut buf).is_err(),
            "{profile}: immediate replay refused"
        );
        let rtcp = ok(&answer["protect_rtcp"][0]).unwrap();
        let n = session.unprotect_rtcp(&rtcp, &mut buf).unwrap();
        assert_eq!(&buf[..n], &peer_report[..], "{profile}: SRTCP from libsrtp");
        assert!(
            session.unprotect_rtcp(&rtcp, &mut buf).is_err(),
            "{profile}: SRTCP replay refused"
        );
    }
}

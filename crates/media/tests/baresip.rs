//! Interop with a real peer: baresip (Debian `baresip-core`) calls a test
//! harness built on this crate over SDES-SRTP (`mediaenc=srtp-mand`). The
//! harness answers the INVITE with a minimal hand-written SIP exchange over
//! UDP (the project's SIP stack lives in another crate), negotiates with
//! [`SdpNegotiator`] and runs the call on a [`MediaWorker`].
//!
//! baresip plays a WAV (600 Hz, then 1400 Hz) that the harness must hear in
//! that order; the harness sends 1 kHz that baresip must record (sndfile).
//! Fails, never skips, when baresip is missing.

// Helpers of this test file fail the test by panicking, as its #[test] fns do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_media::codec::CodecKind;
use switchboard_media::driver::{CallAudio, MediaWorker};
use switchboard_media::ports::RtpPorts;
use switchboard_media::sdp::{
    CodecPreference, Direction, LocalEndpoint, MediaConfig, SdpNegotiator,
};
use switchboard_media::session::{FrameStatus, MediaEvent, MediaSession, SessionConfig};
use switchboard_media::srtp::SrtpPolicy;
use switchboard_media::tones::{dominant_frequency, goertzel_dbfs};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const FIRST_HZ: f32 = 600.0;
const SECOND_HZ: f32 = 1400.0;
const HARNESS_HZ: f32 = 1000.0;
const DIGITS: &str = "159#";

fn write_wav(path: &Path, rate: u32, channels: u16, mono: &[i16]) {
    // baresip's aufile wants the codec's channel count (2 for opus/48000/2).
    let samples: Vec<i16> = mono
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, usize::from(channels)))
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    out.extend_from_slice(&(2 * channels).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in &samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

/// Reads a 16-bit PCM WAV: (rate, channels, samples).
fn read_wav(path: &Path) -> (u32, u16, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    let mut pos = 12;
    let (mut rate, mut channels, mut samples) = (0, 0, vec![]);
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let declared = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + declared).min(bytes.len())];
        if id == b"fmt " {
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            // A writer killed mid-call leaves the length unset: take what is there.
            let body = if declared == 0 || declared > bytes.len() {
                &bytes[pos + 8..]
            } else {
                body
            };
            samples = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            break;
        }
        pos += 8 + declared + (declared & 1);
    }
    (rate, channels, samples)
}

fn tone(rate: u32, hz: f32, seconds: f32, start: usize) -> Vec<i16> {
    (0..(rate as f32 * seconds) as usize)
        .map(|i| {
            (6000.0 * (2.0 * std::f32::consts::PI * hz * (start + i) as f32 / rate as f32).sin())
                as i16
        })
        .collect()
}

/// Two free UDP ports p and p+1 (baresip puts SIP TLS on p+1).
fn free_sip_port() -> u16 {
    loop {
        let a = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX
            && UdpSocket::bind((LOOPBACK, port + 1)).is_ok()
            && std::net::TcpListener::bind((LOOPBACK, port)).is_ok()
        {
            return port;
        }
    }
}

struct Baresip {
    child: Child,
    dir: PathBuf,
    /// baresip's UDP keystroke console: digits typed here during a call go out as RFC 4733 DTMF.
    console: SocketAddr,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Baresip {
    fn log(&mut self) -> String {
        let _ = self.child.kill();
        let out = self.child.stdout.take().map(|mut s| {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut text);
            text
        });
        out.unwrap_or_default()
    }
}

fn start_baresip(
    name: &str,
    codec: &str,
    wav_rate: u32,
    channels: u16,
    harness: SocketAddr,
) -> Baresip {
    let dir =
        std::env::temp_dir().join(format!("switchboard-baresip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dump")).unwrap();
    let mut wav = tone(wav_rate, FIRST_HZ, 1.5, 0);
    wav.extend(tone(wav_rate, SECOND_HZ, 3.5, 0));
    write_wav(&dir.join("source.wav"), wav_rate, channels, &wav);
    let sip_port = free_sip_port();
    let console_port = free_sip_port();
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\n\
audio_player aubridge,nil\naudio_alert aubridge,nil\naudio_source aufile,{src}\n\
module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule g722.so\nmodule opus.so\n\
module aufile.so\nmodule aubridge.so\nmodule srtp.so\nmodule sndfile.so\nsnd_path {dump}\n\
module_app account.so\nmodule_app menu.so\nmodule cons.so\ncons_listen 127.0.0.1:{console_port}\n",
        src = dir.join("source.wav").display(),
        dump = dir.join("dump").display(),
    );
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:bob@127.0.0.1:{sip_port};transport=udp>;regint=0;mediaenc=srtp-mand;audio_codecs={codec}\n"),
    )
    .unwrap();
    let child = Command::new("baresip")
        .arg("-f")
        .arg(&dir)
        .args(["-t", "15", "-e"])
        .arg(format!("/dial sip:harness@{harness}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip must be installed: apt-get install baresip-core (tests/deps/media.apt)");
    Baresip {
        child,
        dir,
        console: SocketAddr::new(LOOPBACK, console_port),
    }
}

/// A parsed SIP request: start line, headers (lower-case names, in order), body.
struct SipRequest {
    method: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl SipRequest {
    fn parse(data: &[u8]) -> Option<SipRequest> {
        let text = std::str::from_utf8(data).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let start = lines.next()?;
        if start.starts_with("SIP/2.0") {
            return None;
        }
        let method = start.split(' ').next()?.to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(SipRequest {
            method,
            headers,
            body: body.to_owned(),
        })
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Default)]
struct Heard {
    audio: Vec<i16>,
    events: Vec<MediaEvent>,
}

struct Harness {
    heard: Arc<Mutex<Heard>>,
    sample: usize,
}

impl CallAudio for Harness {
    fn outbound(&mut self, frame: &mut [i16]) -> bool {
        let t = tone(
            48_000,
            HARNESS_HZ,
            frame.len() as f32 / 48_000.0,
            self.sample,
        );
        frame.copy_from_slice(&t[..frame.len()]);
        self.sample += frame.len();
        true
    }

    fn inbound(&mut self, frame: &[i16], _status: FrameStatus) {
        self.heard.lock().unwrap().audio.extend_from_slice(frame);
    }

    fn event(&mut self, event: MediaEvent) {
        self.heard.lock().unwrap().events.push(event);
    }
}

/// The window index (200 ms windows at 48 kHz) where `hz` first dominates at a real level.
fn first_window_with(audio: &[i16], hz: f32) -> Option<usize> {
    audio.chunks(9600).position(|w| {
        w.len() == 9600
            && dominant_frequency(w, 48_000, [FIRST_HZ, SECOND_HZ, HARNESS_HZ, 300.0, 2500.0])
                == Some(hz)
            && goertzel_dbfs(w, 48_000, hz) > -30.0
    })
}

async fn call_from_baresip(
    name: &str,
    baresip_codec: &str,
    wav_rate: u32,
    channels: u16,
    expected: CodecKind,
    min_snr_db: f64,
) {
    let sip = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    sip.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let harness_addr = sip.local_addr().unwrap();
    let mut baresip = start_baresip(name, baresip_codec, wav_rate, channels, harness_addr);

    // Wait for the INVITE.
    let mut buf = vec![0u8; 65_535];
    let deadline = Instant::now() + Duration::from_secs(10);
    let (invite, peer) = loop {
        assert!(
            Instant::now() < deadline,
            "no INVITE from baresip; its log:\n{}",
            baresip.log()
        );
        if let Ok((n, from)) = sip.recv_from(&mut buf) {
            if let Some(req) = SipRequest::parse(&buf[..n]) {
                if req.method == "INVITE" {
                    break (req, from);
                }
            }
        }
    };
    assert!(
        invite.body.contains("RTP/SAVP") && invite.body.contains("a=crypto:"),
        "baresip offers SDES-SRTP:\n{}",
        invite.body
    );

    // Answer it with the media crate.
    let ports = RtpPorts::bind_ephemeral(LOOPBACK).unwrap();
    let config = MediaConfig {
        encryption: SrtpPolicy::Require,
        codecs: vec![CodecPreference {
            name: expected.sdp_name().into(),
            rate: 0,
        }],
        only_listed_codecs: true,
        ..MediaConfig::default()
    };
    let mut negotiator = SdpNegotiator::new(
        config,
        LocalEndpoint {
            address: LOOPBACK,
            rtp_port: ports.rtp_port(),
        },
    );
    let (answer, media) = negotiator
        .answer_offer(&invite.body, Direction::SendRecv)
        .unwrap();
    assert_eq!(media.codec, expected);
    assert!(media.srtp.is_some());
    let to_tag = "sbharness1";
    let mut response = String::from("SIP/2.0 200 OK\r\n");
    for via in invite.all("via") {
        response.push_str(&format!("Via: {via}\r\n"));
    }
    let remote_contact = invite
        .header("contact")
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default()
        .to_owned();
    response.push_str(&format!(
        "From: {}\r\nTo: {};tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:harness@{harness_addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
        invite.header("from"),
        invite.header("to"),
        invite.header("call-id"),
        invite.header("cseq"),
        answer.len()
    ));
    sip.send_to(response.as_bytes(), peer).unwrap();

    let session = MediaSession::new(SessionConfig::default(), media, Instant::now()).unwrap();
    let heard = Arc::new(Mutex::new(Heard::default()));
    let worker = MediaWorker::spawn();
    let call = worker.add_call(
        ports,
        session,
        Box::new(Harness {
            heard: heard.clone(),
            sample: 0,
        }),
    );

    // Let the WAV play; answer retransmitted INVITEs, take the ACK.
    let mut requests: HashMap<String, usize> = HashMap::new();
    let started = Instant::now();
    let until = started + Duration::from_millis(4400);
    let keys = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let mut typed = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Type 1, 5, 9, # on baresip's console, 350 ms apart, from 1.8 s on.
        if typed < DIGITS.len()
            && started.elapsed() > Duration::from_millis(1800 + 350 * typed as u64)
        {
            keys.send_to(&DIGITS.as_bytes()[typed..typed + 1], baresip.console)
                .unwrap();
            typed += 1;
        }
        if let Ok((n, from)) = sip.recv_from(&mut buf) {
            if let Some(req) = SipRequest::parse(&buf[..n]) {
                *requests.entry(req.method.clone()).or_default() += 1;
                if req.method == "INVITE" {
                    sip.send_to(response.as_bytes(), from).unwrap();
                }
            }
        }
    }
    let stats = call.stats().await.unwrap();

    // Hang up so baresip closes its recording.
    let bye = format!(
        "BYE {remote_contact} SIP/2.0\r\nVia: SIP/2.0/UDP {harness_addr};branch=z9hG4bKsbbye1;rport\r\nMax-Forwards: 70\r\nFrom: {};tag={to_tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        invite.header("to"),
        invite.header("from"),
        invite.header("call-id"),
    );
    sip.send_to(bye.as_bytes(), peer).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(call);

    let audio = heard.lock().unwrap().audio.clone();
    let digits: String = heard
        .lock()
        .unwrap()
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf(d) => Some(d.as_char()),
            _ => None,
        })
        .collect();
    let first = first_window_with(&audio, FIRST_HZ);
    let second = first_window_with(&audio, SECOND_HZ);
    let log = if first.is_none() || second.is_none() {
        baresip.log()
    } else {
        String::new()
    };
    assert!(
        requests.contains_key("ACK"),
        "{name}: baresip acknowledged the 200: {requests:?}"
    );
    assert!(stats.packets_received > 100, "{name}: {stats:?}\n{log}");
    assert_eq!(
        stats.srtp_rejected, 0,
        "{name}: every SRTP packet from baresip authenticated"
    );
    let (first, second) = (
        first.unwrap_or_else(|| panic!("{name}: {FIRST_HZ} Hz never heard\n{log}")),
        second.unwrap_or_else(|| panic!("{name}: {SECOND_HZ} Hz never heard\n{log}")),
    );
    assert!(
        first < second,
        "{name}: heard the WAV in order ({first} < {second})"
    );
    assert_eq!(
        digits, DIGITS,
        "{name}: baresip's RFC 4733 digits, each once"
    );

    // baresip heard our 1 kHz: its sndfile recording of the decoded stream.
    let dump = std::fs::read_dir(baresip.dir.join("dump"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"));
    let dump =
        dump.unwrap_or_else(|| panic!("{name}: baresip wrote no recording\n{}", baresip.log()));
    let (rate, channels, samples) = read_wav(&dump);
    let mono: Vec<i16> = samples
        .iter()
        .step_by(usize::from(channels.max(1)))
        .copied()
        .collect();
    assert!(
        mono.len() > rate as usize * 2,
        "{name}: {} samples at {rate} Hz recorded",
        mono.len()
    );
    let tail = &mono[mono.len() / 2..];
    assert_eq!(
        dominant_frequency(tail, rate, [FIRST_HZ, SECOND_HZ, HARNESS_HZ, 300.0, 2500.0]),
        Some(HARNESS_HZ),
        "{name}: baresip heard 1 kHz"
    );
    assert!(
        goertzel_dbfs(tail, rate, HARNESS_HZ) > -30.0,
        "{name}: at a real level"
    );
    // How clean: our encoder, baresip's decoder (another implementation),
    // so errors of one side cannot cancel out in the other.
    let snr = median_sine_snr_db(tail, rate, f64::from(HARNESS_HZ));
    eprintln!("{name}: baresip heard the 1 kHz tone at {snr:.1} dB SNR");
    assert!(
        snr >= min_snr_db,
        "{name}: SNR {snr:.1} dB below {min_snr_db} dB"
    );
}

/// Signal-to-noise-and-distortion of a sine of known frequency: in each
/// 50 ms window the best-fitting sine (least squares over its phase and
/// amplitude) is the signal, the rest noise; the median over windows, so
/// that a jitter-buffer gap in one window does not decide.
fn median_sine_snr_db(samples: &[i16], rate: u32, hz: f64) -> f64 {
    let window = (rate / 20) as usize;
    let mut ratios: Vec<f64> = samples
        .chunks_exact(window)
        .map(|w| {
            let step = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
            let (mut cc, mut ss, mut cs, mut xc, mut xs) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (i, &x) in w.iter().enumerate() {
                let (s, c) = (step * i as f64).sin_cos();
                let x = f64::from(x);
                cc += c * c;
                ss += s * s;
                cs += c * s;
                xc += x * c;
                xs += x * s;
            }
            // Solve [cc cs; cs ss] [a b] = [xc xs].
            let det = cc * ss - cs * cs;
            let a = (xc * ss - xs * cs) / det;
            let b = (xs * cc - xc * cs) / det;
            let (mut signal, mut noise) = (0.0, 0.0);
            for (i, &x) in w.iter().enumerate() {
                let (s, c) = (step * i as f64).sin_cos();
                let fit = a * c + b * s;
                signal += fit * fit;
                noise += (f64::from(x) - fit).powi(2);
            }
            10.0 * (signal / noise.max(1e-9)).log10()
        })
        .collect();
    assert!(!ratios.is_empty(), "no audio to measure");
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_pcmu_over_srtp() {
    call_from_baresip("pcmu", "PCMU", 8000, 1, CodecKind::Pcmu, 28.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_g722_over_srtp() {
    call_from_baresip("g722", "G722", 16000, 1, CodecKind::G722, 38.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_opus_over_srtp() {
    call_from_baresip("opus", "opus/48000/2", 48000, 2, CodecKind::Opus, 25.0).await;
}

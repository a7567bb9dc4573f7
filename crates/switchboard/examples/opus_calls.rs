//! Load generator for bench/inbound-calls.sh (`OPUS=1`): places calls that
//! speak Opus, as a WebRTC client or an Opus softphone would, because SIPp
//! sends only G.711 from an ordinary socket (its pcap player opens a raw
//! socket per call, which skews the kernel's cost on loopback).
//!
//! Each call: INVITE with an Opus-only offer to `sip:<prefix><k>@<server>`,
//! ACK the 200, send fullband Opus (pre-encoded once: the generator must
//! stay cheap next to what it measures) for `--hold` seconds, count what
//! comes back, BYE. Calls start at `--rate` per second, all on one thread.
//! Like libwebrtc, it limits its band to the answer's `maxplaybackrate`
//! (RFC 7587); `--fullband` sends fullband whatever the answer says.
//!
//! ```text
//! cargo run --release -p switchboard --example opus_calls -- \
//!   --server 127.0.0.1:5060 --calls 100 --rate 25 --hold 16 --prefix room
//! ```
//!
//! Prints one line: calls, answered, failed, RTP sent, RTP received, and
//! answered calls that received no RTP.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_media::codec::opus::{OpusEncoder, OpusSettings};
use switchboard_media::rtp::write_rtp_header;

const PAYLOAD_TYPE: u8 = 111;
const RTP_HEADER_LEN: usize = 12;
const FRAME: Duration = Duration::from_millis(20);
/// Samples per 20 ms at 48 kHz: the RTP timestamp step of Opus.
const SAMPLES_PER_FRAME: usize = 960;
/// How long an INVITE may go unanswered before the call counts as failed.
const INVITE_TIMEOUT: Duration = Duration::from_secs(32);
/// Seconds of audio encoded up front and looped.
const SOURCE_SECONDS: usize = 3;

struct Options {
    server: SocketAddr,
    calls: usize,
    rate: f64,
    hold: Duration,
    prefix: String,
    /// Send at most the band the answer's `maxplaybackrate` asks for, as
    /// libwebrtc does; off: always fullband.
    honour_playback_rate: bool,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut server = None;
    let (mut calls, mut rate, mut hold, mut prefix) = (10, 10.0, 10.0, String::from("room"));
    let mut honour_playback_rate = true;
    while let Some(flag) = args.next() {
        if flag == "--fullband" {
            honour_playback_rate = false;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--server" => server = Some(value.parse().map_err(|e| bad(&e))?),
            "--calls" => calls = value.parse().map_err(|e| bad(&e))?,
            "--rate" => rate = value.parse().map_err(|e| bad(&e))?,
            "--hold" => hold = value.parse().map_err(|e| bad(&e))?,
            "--prefix" => prefix = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Options {
        server: server.ok_or("--server is required")?,
        calls,
        rate: f64::max(rate, 0.1),
        hold: Duration::from_secs_f64(hold),
        prefix,
        honour_playback_rate,
    })
}

/// The rates a sender may limit its audio to (a peer's `maxplaybackrate`).
const SOURCE_RATES: [u32; 3] = [8_000, 16_000, 48_000];

/// A voice-like test signal at `rate`, encoded as a WebRTC client does
/// (complexity 10, 32 kbit/s): a gliding pitch with harmonics, in syllables
/// of about 200 ms, so the encoder makes speech-sized packets.
fn encode_source(rate: u32) -> Result<Vec<Vec<u8>>, String> {
    let settings = OpusSettings {
        pcm_rate: rate,
        fec: false,
        ..OpusSettings::fullband()
    };
    let mut encoder = OpusEncoder::new(&settings).map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    let frame_len = rate as usize / 50;
    let mut pcm = vec![0i16; frame_len];
    let mut payload = [0u8; 1500];
    for frame in 0..SOURCE_SECONDS * 50 {
        for (i, sample) in pcm.iter_mut().enumerate() {
            let t = (frame * frame_len + i) as f64 / f64::from(rate);
            let pitch = 140.0 + 40.0 * (t * 1.3).sin();
            let envelope = (t * std::f64::consts::PI * 5.0).sin().abs();
            let voice: f64 = (1..=6)
                .filter(|h| pitch * f64::from(*h) < f64::from(rate) / 2.0)
                .map(|h| (t * pitch * f64::from(h) * std::f64::consts::TAU).sin() / f64::from(h))
                .sum();
            *sample = (voice * envelope * 6_000.0) as i16;
        }
        let n = encoder
            .encode(&pcm, &mut payload)
            .map_err(|e| e.to_string())?;
        frames.push(payload[..n].to_vec());
    }
    Ok(frames)
}

#[derive(PartialEq)]
enum Phase {
    Inviting,
    Talking { until: Instant },
    Leaving { since: Instant },
    Done,
}

/// The pre-encoded audio, by rate, ascending.
struct Sources {
    frames: Vec<(u32, Vec<Vec<u8>>)>,
    honour_playback_rate: bool,
}

struct Call {
    index: usize,
    sip: UdpSocket,
    rtp: UdpSocket,
    call_id: String,
    to: String,
    phase: Phase,
    started: Instant,
    hold: Duration,
    /// Where its audio goes (from the answer's SDP).
    media: Option<SocketAddr>,
    /// The answer's `maxplaybackrate`, which a WebRTC sender honours by
    /// limiting its encoder's band.
    playback_rate: u32,
    /// The request URI of in-dialog requests (the answer's Contact).
    target: String,
    /// The To header with the answer's tag.
    remote_to: String,
    sequence: u16,
    sent: u64,
    received: u64,
    answered: bool,
    failed: bool,
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

impl Call {
    fn start(index: usize, options: &Options) -> std::io::Result<Call> {
        let sip = UdpSocket::bind("127.0.0.1:0")?;
        let rtp = UdpSocket::bind("127.0.0.1:0")?;
        sip.set_nonblocking(true)?;
        rtp.set_nonblocking(true)?;
        let to = format!("sip:{}{index}@{}", options.prefix, options.server);
        let call = Call {
            index,
            call_id: format!("opus-{}-{index}", std::process::id()),
            to: to.clone(),
            target: to,
            sip,
            rtp,
            phase: Phase::Inviting,
            started: Instant::now(),
            hold: options.hold,
            media: None,
            playback_rate: 48_000,
            remote_to: String::new(),
            sequence: 0,
            sent: 0,
            received: 0,
            answered: false,
            failed: false,
        };
        call.invite(options.server)?;
        Ok(call)
    }

    fn local(&self, socket: &UdpSocket) -> String {
        socket
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    fn from(&self) -> String {
        format!(
            "<sip:+1666{}@{}>;tag=opus{}",
            self.index,
            self.local(&self.sip),
            self.index
        )
    }

    fn invite(&self, server: SocketAddr) -> std::io::Result<()> {
        let rtp_port = self.rtp.local_addr()?.port();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} RTP/AVP {PAYLOAD_TYPE}\r\na=rtpmap:{PAYLOAD_TYPE} opus/48000/2\r\n\
             a=fmtp:{PAYLOAD_TYPE} minptime=10;useinbandfec=1\r\na=ptime:20\r\n"
        );
        let local = self.local(&self.sip);
        let message = format!(
            "INVITE {to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}-1;rport\r\n\
             From: {from}\r\nTo: <{to}>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:opus@{local}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            to = self.to,
            id = self.call_id,
            from = self.from(),
            len = sdp.len(),
        );
        self.sip.send_to(message.as_bytes(), server).map(|_| ())
    }

    fn in_dialog(&self, method: &str, cseq: u32, server: SocketAddr) {
        let local = self.local(&self.sip);
        let message = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}-{cseq}{method}\r\n\
             From: {from}\r\nTo: {remote_to}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            target = self.target,
            id = self.call_id,
            from = self.from(),
            remote_to = self.remote_to,
        );
        let _ = self.sip.send_to(message.as_bytes(), server);
    }

    /// Answers a request of the dialog (a BYE, a session refresh) with 200.
    fn answer_request(&mut self, message: &str, from: SocketAddr) {
        let mut reply = String::from("SIP/2.0 200 OK\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for line in message.lines() {
                if line
                    .split_once(':')
                    .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                {
                    reply.push_str(line.trim_end());
                    reply.push_str("\r\n");
                }
            }
        }
        reply.push_str("Content-Length: 0\r\n\r\n");
        let _ = self.sip.send_to(reply.as_bytes(), from);
        if message.starts_with("BYE ") {
            self.phase = Phase::Done;
        }
    }

    fn on_sip(&mut self, message: &str, from: SocketAddr, server: SocketAddr) {
        let Some(status) = message.strip_prefix("SIP/2.0 ") else {
            self.answer_request(message, from);
            return;
        };
        let code: u16 = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        let method = header(message, "CSeq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("");
        match (method, code) {
            ("INVITE", 100..=199) => {}
            ("INVITE", 200..=299) => {
                self.remote_to = header(message, "To").unwrap_or("").to_string();
                if let Some(contact) = header(message, "Contact") {
                    let uri = contact.trim_start_matches('<');
                    self.target = uri.split('>').next().unwrap_or(uri).to_string();
                }
                self.media = media_address(message);
                self.playback_rate = max_playback_rate(message).unwrap_or(48_000);
                // A retransmitted 200 gets its ACK again.
                self.in_dialog("ACK", 1, server);
                if self.phase == Phase::Inviting {
                    self.answered = true;
                    self.phase = Phase::Talking {
                        until: Instant::now() + self.hold,
                    };
                }
            }
            ("INVITE", _) => {
                self.failed = true;
                self.phase = Phase::Done;
            }
            ("BYE", _) => self.phase = Phase::Done,
            _ => {}
        }
    }

    /// One 20 ms step: SIP in, RTP in and out, and the phase's timers.
    fn step(&mut self, now: Instant, server: SocketAddr, sources: &Sources, buf: &mut [u8]) {
        while let Ok((n, from)) = self.sip.recv_from(buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.on_sip(&text, from, server);
        }
        loop {
            match self.rtp.recv_from(buf) {
                Ok(_) => self.received += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        match self.phase {
            Phase::Inviting if now.duration_since(self.started) > INVITE_TIMEOUT => {
                self.failed = true;
                self.phase = Phase::Done;
            }
            Phase::Talking { until } if now >= until => {
                self.in_dialog("BYE", 2, server);
                self.phase = Phase::Leaving { since: now };
            }
            Phase::Talking { .. } => {
                let rate = if sources.honour_playback_rate {
                    self.playback_rate
                } else {
                    48_000
                };
                // The lowest band at or above what the peer renders.
                let source = sources
                    .frames
                    .iter()
                    .find(|(r, _)| *r >= rate)
                    .or(sources.frames.last())
                    .map(|(_, f)| f.as_slice())
                    .unwrap_or_default();
                self.send_frame(source);
            }
            Phase::Leaving { since } if now.duration_since(since) > Duration::from_secs(4) => {
                self.phase = Phase::Done;
            }
            _ => {}
        }
    }

    fn send_frame(&mut self, source: &[Vec<u8>]) {
        let Some(media) = self.media else { return };
        let Some(payload) = source.get(self.sent as usize % source.len().max(1)) else {
            return;
        };
        let mut packet = [0u8; 1512];
        let timestamp = (self.sent as u32).wrapping_mul(SAMPLES_PER_FRAME as u32);
        let ssrc = 0x4f50_0000 | self.index as u32;
        write_rtp_header(
            &mut packet,
            self.sent == 0,
            PAYLOAD_TYPE,
            self.sequence,
            timestamp,
            ssrc,
        );
        let end = RTP_HEADER_LEN + payload.len();
        if let Some(body) = packet.get_mut(RTP_HEADER_LEN..end) {
            body.copy_from_slice(payload);
            let _ = self.rtp.send_to(&packet[..end], media);
        }
        self.sequence = self.sequence.wrapping_add(1);
        self.sent += 1;
    }
}

/// The `maxplaybackrate` of the answer's Opus format, if it says one.
fn max_playback_rate(message: &str) -> Option<u32> {
    let at = message.find("maxplaybackrate=")? + "maxplaybackrate=".len();
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The answer's connection address and audio port.
fn media_address(message: &str) -> Option<SocketAddr> {
    let body = message.split("\r\n\r\n").nth(1)?;
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?;
    format!("{ip}:{port}").parse().ok()
}

fn main() -> Result<(), String> {
    let options = options()?;
    let sources = Sources {
        frames: SOURCE_RATES
            .iter()
            .map(|&rate| encode_source(rate).map(|frames| (rate, frames)))
            .collect::<Result<_, _>>()?,
        honour_playback_rate: options.honour_playback_rate,
    };
    let started = Instant::now();
    let mut calls: HashMap<usize, Call> = HashMap::new();
    let (mut placed, mut finished) = (0usize, Vec::new());
    let mut buf = vec![0u8; 65_536];
    let mut next_tick = started;
    while placed < options.calls || !calls.is_empty() {
        let now = Instant::now();
        let due = (now.duration_since(started).as_secs_f64() * options.rate) as usize + 1;
        while placed < options.calls.min(due) {
            match Call::start(placed, &options) {
                Ok(call) => {
                    calls.insert(placed, call);
                }
                Err(e) => eprintln!("call {placed}: {e}"),
            }
            placed += 1;
        }
        for call in calls.values_mut() {
            call.step(now, options.server, &sources, &mut buf);
        }
        let done: Vec<usize> = calls
            .iter()
            .filter(|(_, c)| c.phase == Phase::Done)
            .map(|(k, _)| *k)
            .collect();
        for key in done {
            if let Some(call) = calls.remove(&key) {
                finished.push(call);
            }
        }
        next_tick += FRAME;
        if let Some(wait) = next_tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let answered = finished.iter().filter(|c| c.answered).count();
    let failed = finished.iter().filter(|c| c.failed || !c.answered).count();
    let sent: u64 = finished.iter().map(|c| c.sent).sum();
    let received: u64 = finished.iter().map(|c| c.received).sum();
    let deaf = finished
        .iter()
        .filter(|c| c.answered && c.received == 0)
        .count();
    println!(
        "opus calls {} answered {answered} failed {failed} rtp_sent {sent} rtp_received {received} deaf {deaf}",
        options.calls
    );
    Ok(())
}

//! What idle calls cost the media worker: N calls on one worker for a few
//! seconds, nothing arriving on any of them, sending their 20 ms packets to
//! far ends that stay silent. Prints the process CPU time per call-second
//! and the receive system calls made. Results in bench/media.md.
//!
//!     cargo bench -p switchboard-media --bench idle_calls [-- CALLS SECONDS]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use switchboard_media::driver::{CallAudio, MediaWorker};
use switchboard_media::ports::RtpPorts;
use switchboard_media::sdp::{Direction, LocalEndpoint, MediaConfig, SdpNegotiator};
use switchboard_media::session::{FrameStatus, MediaEvent, MediaSession, SessionConfig};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Silent;

impl CallAudio for Silent {
    fn outbound(&mut self, _frame: &mut [i16]) -> bool {
        false
    }
    fn inbound(&mut self, _frame: &[i16], _status: FrameStatus) {}
    fn event(&mut self, _event: MediaEvent) {}
}

/// User plus system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let calls: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let worker = MediaWorker::spawn();
        let mut keep = Vec::new();
        for _ in 0..calls {
            let near = RtpPorts::bind_ephemeral(LOOPBACK).unwrap();
            let far = RtpPorts::bind_ephemeral(LOOPBACK).unwrap();
            let mut near_sdp = SdpNegotiator::new(
                MediaConfig::default(),
                LocalEndpoint {
                    address: LOOPBACK,
                    rtp_port: near.rtp_port(),
                },
            );
            let mut far_sdp = SdpNegotiator::new(
                MediaConfig::default(),
                LocalEndpoint {
                    address: LOOPBACK,
                    rtp_port: far.rtp_port(),
                },
            );
            let offer = near_sdp.create_offer(Direction::SendRecv).unwrap();
            let (answer, _) = far_sdp.answer_offer(&offer, Direction::SendRecv).unwrap();
            let media = near_sdp.accept_answer(&answer).unwrap();
            let session =
                MediaSession::new(SessionConfig::default(), media, std::time::Instant::now())
                    .unwrap();
            keep.push((worker.add_call(near, session, Box::new(Silent)), far));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let probe = &keep[0].0;
        let sent_before = probe.stats().await.unwrap().packets_sent;
        let (cpu_before, reads_before) = (cpu_seconds(), worker.receive_syscalls());
        let started = std::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let cpu = cpu_seconds() - cpu_before;
        let wall = started.elapsed().as_secs_f64();
        let reads = worker.receive_syscalls() - reads_before;
        // One packet per call per tick: the ticks the worker managed.
        let ticks = probe.stats().await.unwrap().packets_sent - sent_before;
        println!(
            "{calls} idle calls, {wall:.1} s: {ticks} ticks (of {:.0} due), {:.1} µs CPU per call per tick, {reads} receive syscalls",
            wall * 50.0,
            1e6 * cpu / (calls as f64 * ticks.max(1) as f64),
        );
    });
}

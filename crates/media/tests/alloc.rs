//! No heap allocation per frame in steady state, shown by a counting global
//! allocator: two sessions exchange audio (decode, jitter buffer, resample,
//! encode, RTP) for 10 s after a warm-up while every allocation is counted.
//!
//! The SRTP path is measured too but not held to zero: `rtc-srtp` returns
//! each protected/unprotected packet in a fresh buffer (one allocation per
//! protect or unprotect); see bench/media.md.

// Helpers of this test file fail the test by panicking, as its #[test] fns do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A global allocator is an `unsafe impl` by definition; this test is its only user.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};
use switchboard_media::sdp::{
    CodecPreference, Direction, LocalEndpoint, MediaConfig, SdpNegotiator,
};
use switchboard_media::session::{MediaSession, SessionConfig};
use switchboard_media::srtp::SrtpPolicy;

struct Counting;

thread_local! {
    // Per thread: `cargo test` runs this file's tests side by side, and
    // each must count only its own allocations.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts one allocation on this thread (not during thread teardown, when
/// the counter may be gone already).
fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// Allocations counted on this thread so far.
fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn sessions(codec: &str, encryption: SrtpPolicy) -> (MediaSession, MediaSession) {
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
    // Reports every 5 s allocate (rtc-rtcp marshalling); they are not per frame.
    let cfg = SessionConfig {
        rtcp_interval: Duration::from_secs(3600),
        ..SessionConfig::default()
    };
    let now = Instant::now();
    (
        MediaSession::new(cfg.clone(), a_media, now).unwrap(),
        MediaSession::new(cfg, b_media, now).unwrap(),
    )
}

/// Allocations during `frames` ticks of a call, after 100 warm-up ticks.
fn allocations_per_call(codec: &str, encryption: SrtpPolicy, frames: u64) -> u64 {
    let (mut a, mut b) = sessions(codec, encryption);
    let from_a = "127.0.0.1:10000".parse().unwrap();
    let from_b = "127.0.0.1:20000".parse().unwrap();
    let mut out = vec![0i16; 960];
    let mut heard = vec![0i16; 960];
    for (i, s) in out.iter_mut().enumerate() {
        *s = ((i as f32 * 0.13).sin() * 4000.0) as i16;
    }
    let mut wire = [0u8; 1500];
    let start = Instant::now();
    let mut count_from = 0;
    for i in 0..100 + frames {
        if i == 100 {
            count_from = allocations();
        }
        let now = start + Duration::from_millis(20 * i);
        a.tick(now, Some(&out), &mut heard);
        b.tick(now, Some(&out), &mut heard);
        while let Some(t) = a.poll_transmit() {
            let n = t.data.len();
            wire[..n].copy_from_slice(t.data);
            b.handle_datagram(now, from_a, t.channel, &wire[..n]);
        }
        while let Some(t) = b.poll_transmit() {
            let n = t.data.len();
            wire[..n].copy_from_slice(t.data);
            a.handle_datagram(now, from_b, t.channel, &wire[..n]);
        }
        while a.poll_event().is_some() || b.poll_event().is_some() {}
    }
    let counted = allocations() - count_from;
    assert!(
        b.stats().packets_received >= frames,
        "the call carried audio"
    );
    counted
}

#[test]
fn steady_state_frames_do_not_allocate() {
    for codec in ["PCMU", "PCMA", "G722", "opus"] {
        let allocations = allocations_per_call(codec, SrtpPolicy::Disable, 500);
        assert_eq!(
            allocations, 0,
            "{codec}: {allocations} allocations in 500 frames of two sessions"
        );
    }
}

#[test]
fn srtp_allocations_are_bounded_per_packet() {
    let allocations = allocations_per_call("PCMU", SrtpPolicy::Require, 500);
    eprintln!("SRTP: {allocations} allocations in 500 frames of two calls");
    // 1000 packets protected and 1000 unprotected in 500 frames of two calls.
    assert!(
        allocations <= 2 * 2000,
        "{allocations} allocations for 2000 SRTP operations"
    );
}
